"""`pip install -e .` (scripts/setup.sh, pyproject.toml) makes the library importable from any directory, and a
plain `pip install .` installs everything the library needs (the metric module included)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import EMODB, ROOT, require


def test_library_imports_outside_the_repository(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = "import modeling_ser, ser.inference.predictor; print(modeling_ser.__file__); print(ser.inference.predictor.__file__)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "modeling_ser.py"), str(ROOT / "ser" / "inference" / "predictor.py")]


# --- `pip install .` (not editable): the installed package alone, the repository out of reach ---------------------
INSTALLED_PROBE = """
import importlib.metadata, json, sys
from pathlib import Path
site, model, clip = sys.argv[1:4]
import soundfile as sf
from transformers import pipeline
classify = pipeline("audio-classification", model=model, trust_remote_code=True, top_k=None)
scores = classify(sf.read(clip, dtype="float32")[0])
import ser, ser.reporting.metrics
from ser.reporting.metrics import METRIC_PATH, classification_metrics
metric = classification_metrics([0, 1, 1], [0, 1, 0], num_labels=2)
(script,) = importlib.metadata.entry_points(group="console_scripts", name="ser-predict")
main = script.load()
code = main(["--model", model, "--runtime", "fp32", clip])
print(json.dumps({"ser": ser.__file__, "metric_path": str(METRIC_PATH), "metric": metric, "scores": scores,
                  "entry_point": script.value, "dist": str(script.dist.locate_file("")), "code": code,
                  "predict_ser": sys.modules["predict_ser"].__file__, "modeling_ser": "modeling_ser" in sys.modules}))
"""
SOURCES = ["pyproject.toml", "README.md", "modeling_ser.py", "feature_extraction_ser.py", "speech_ser.py",
           "train_ser.py", "predict_ser.py", "app.py", "ser"]


def test_a_non_editable_install_runs_the_pipeline_ser_predict_and_the_metric(tmp_path):
    """`pip install .` of a copy of the sources into a folder, then, in a fresh venv whose only view of the project
    is that folder (the development venv's packages on PYTHONPATH, which leaves out its editable-install hook, and a
    working directory outside the repository): the stock pipeline on the shipped default model, the `ser-predict`
    entry point on a clip, and the evaluate metric module shipped inside the package."""
    source, site, venv, elsewhere = (tmp_path / name for name in ("src", "site", "venv", "elsewhere"))
    source.mkdir()
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info beside the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--quiet", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site / "ser" / "reporting" / "ser_metrics" / "ser_metrics.py").is_file()  # the metric module shipped as package data
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}
    model, clip = ROOT / "models" / "ser-whisper-mixture", require(EMODB) / "wav" / "03a01Wa.wav"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", INSTALLED_PROBE, str(site), str(model), str(clip)],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    probe = json.loads(lines[-1])
    assert Path(probe["ser"]).parent == site / "ser"  # the installed package, not the repository's
    assert Path(probe["predict_ser"]) == site / "predict_ser.py"
    assert Path(probe["dist"]) == site and probe["entry_point"] == "predict_ser:main"
    assert Path(probe["metric_path"]) == site / "ser" / "reporting" / "ser_metrics"
    assert probe["metric"]["wa"] == pytest.approx(2 / 3) and probe["metric"]["ua"] == pytest.approx(0.75)
    labels = json.loads((model / "config.json").read_text())["id2label"].values()
    assert {score["label"] for score in probe["scores"]} == set(labels)
    assert probe["code"] in (0, None)
    assert any("03a01Wa.wav" in line for line in lines[:-1])  # ser-predict's table on stdout
