#!/usr/bin/env bash
# The project's test command (README and CI): the whole suite, offline.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
.venv/bin/python -m pytest -q --durations=15 "$@"  # the slowest 15 listed: the suite should stay under 15 minutes
status=$?
[ $status -eq 5 ] && { echo "no tests collected"; exit 0; }  # pytest's "no tests" code is not a failure
exit $status
