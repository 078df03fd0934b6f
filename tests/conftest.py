"""Shared test fixtures: tiny encoder specs of every family (built here, never downloaded) and real clips."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import torch
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny models gain nothing from more, and threads that spin against other processes lose much
DATA = ROOT.parent / "shared" / "data"
EMODB = DATA / "emodb"
RAVDESS = DATA / "ravdess"

_CONV = dict(conv_dim=(32, 32, 32, 32), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4))
_TRANSFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, layerdrop=0.0)
# "layer" norm in the conv stack: the "group" norm of base-size checkpoints normalises over time, padding included.
_RAW = dict(**_CONV, **_TRANSFORMER, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            feat_extract_norm="layer", do_stable_layer_norm=True, classifier_proj_size=16)
TINY_SPECS = {
    "wav2vec2": {"family": "wav2vec2", "encoder": _RAW},
    "hubert": {"family": "hubert", "encoder": _RAW},
    "wavlm": {"family": "wavlm", "encoder": {**_RAW, "num_buckets": 32, "max_bucket_distance": 100}},
    "wav2vec2-bert": {"family": "wav2vec2-bert", "encoder": {**_TRANSFORMER, "output_hidden_size": 32,
                      "conv_depthwise_kernel_size": 5, "classifier_proj_size": 16}},
    "logmel-cnn": {"family": "logmel-cnn", "encoder": {"num_mel_bins": 32, "conv_channels": [8, 16],
                   "classifier_proj_size": 16}},
}
FAMILIES = list(TINY_SPECS)


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real corpus not found at {path}")
    return path


@pytest.fixture(scope="session")
def emodb_clips():
    """Four real Emo-DB clips (two angry, two sad) as 16 kHz float arrays, labels 0/1."""
    names = ["03a01Wa.wav", "03a05Wa.wav", "03a02Ta.wav", "03a04Ta.wav"]
    wav_dir = require(EMODB / "wav")
    audio = [sf.read(wav_dir / name, dtype="float32")[0] for name in names]
    return audio, np.array([0, 0, 1, 1])


# --- train_ser.py as a user runs it (tests of training, export and datasets) -----------------------------------
SPEAKERS = ("03", "08", "09")


def tiny_spec(tmp_path, family="wav2vec2-bert"):
    path = tmp_path / f"tiny-{family}.json"
    path.write_text(json.dumps(TINY_SPECS[family]))
    return path


def small_emodb_csv(tmp_path, speakers=SPEAKERS, per_speaker=12):
    """A CSV corpus of real Emo-DB clips from a few speakers: the real code path, a fraction of the time."""
    from ser.corpora import load_emodb

    clips = load_emodb(require(EMODB))
    rows = [c for s in speakers for c in [c for c in clips if c.speaker == s][:per_speaker]]
    path = tmp_path / "corpus.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker"])
        writer.writerows([[c.path, c.label, c.speaker] for c in rows])
    return path


def train(tmp_path, *args, launcher=(sys.executable,), check=True, **popen):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [*launcher, str(ROOT / "train_ser.py"), "--report_to", "none", "--disable_tqdm", "true", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=tmp_path, env=env, text=True, **popen)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done
