"""What several test files share: where the real corpora are, tiny encoder specs of every family (built here,
never downloaded), train_ser.py run as a user runs it, the stock pipeline in a fresh process, and a demo server.
Fixtures live in conftest.py; test files import only from here."""

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from ser.data.corpora import data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = data_dir()  # the real corpora ($SER_DATA, else ../shared/data)
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


# --- train_ser.py as a user runs it (tests of training, export and datasets) -----------------------------------
SPEAKERS = ("03", "08", "09")


def tiny_spec(tmp_path, family="wav2vec2-bert"):
    path = tmp_path / f"tiny-{family}.json"
    path.write_text(json.dumps(TINY_SPECS[family]))
    return path


def small_emodb_csv(tmp_path, speakers=SPEAKERS, per_speaker=12):
    """A CSV corpus of real Emo-DB clips from a few speakers: the real code path, a fraction of the time."""
    from ser.data.corpora import load_emodb

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


# A tiny Whisper: 80 mel bins and 1500 positions (30 s) as every Whisper checkpoint; the decoder fields only matter
# for the WhisperModel checkpoints that from_backbone reads.
TINY_WHISPER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, classifier_proj_size=16)
WHISPER_SPEC = {"family": "whisper", "encoder": TINY_WHISPER}


# --- the stock pipeline as a Hub user runs it ----------------------------------------------------------------------
FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np, soundfile as sf
    from transformers import pipeline
    audio = sf.read(sys.argv[1], dtype="float32")[0]
    for folder, remote in zip(sys.argv[2::2], sys.argv[3::2]):
        assert "modeling_ser" not in sys.modules
        kwargs = {"trust_remote_code": True} if remote == "1" else {}
        classify = pipeline("audio-classification", model=folder, top_k=None, **kwargs)
        print(json.dumps({"class": type(classify.model).__name__, "out": classify(audio)}))
""")


def run_fresh_pipelines(folders_remote: list[tuple[Path, bool]], clip) -> list[dict]:
    """The stock pipeline in a new Python that cannot import the project (as a Hub user would run it), once per
    (folder, needs trust_remote_code) in one process; one result per folder."""
    home = folders_remote[0][0].parent
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(home / "hf-home")}
    args = [str(value) for folder, remote in folders_remote for value in (folder, "1" if remote else "0")]
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(clip), *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"class"')]
    assert len(results) == len(folders_remote), done.stdout[-3000:]
    return results


def run_fresh_pipeline(folder, clip, remote):
    return run_fresh_pipelines([(folder, remote)], clip)[0]


# --- a demo server ------------------------------------------------------------------------------------------------
# importing torch, transformers and gradio on two busy cores, and the default runtime's export of the model to ONNX
# where no graph is cached yet (5 s for the default model on a quiet machine, half a minute on busy cores)
START_TIMEOUT = 180


@contextlib.contextmanager
def serving(command: list[str], cwd: Path, env: dict, port: int, log_path: Path):
    """Runs a demo server (its output to `log_path`), yields its URL once it answers, and stops it."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(process, url, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app.py did not serve {url} within {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
