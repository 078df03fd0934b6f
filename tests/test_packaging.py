"""`pip install -e .` (scripts/setup.sh, pyproject.toml) makes the library importable from any directory."""

import os
import subprocess
import sys

from helpers import ROOT


def test_library_imports_outside_the_repository(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = "import modeling_ser, ser.predictor; print(modeling_ser.__file__); print(ser.predictor.__file__)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "modeling_ser.py"), str(ROOT / "ser" / "predictor.py")]
