"""One preparation of the audio (feature_extraction_ser.Preparation, owned by the saved feature extractor): the stock
pipeline, loaded as a Hub user loads it in a fresh process, gives the predictor's probabilities on real clips,
noise-padded ones included, and refuses what the predictor refuses, with the same reasons; training prepares a file
exactly as the pipeline does; a missing Silero wheel is named, not skipped."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor

from helpers import EMODB, RAVDESS, ROOT, DATA, require
from ser.data import corpora
from ser.data import dataset
from ser.core.audio import AudioError, load_audio
from ser.core.defaults import DEFAULT_MODEL
from ser.training.experiment import prepared_audio
from ser.inference.predictor import EmotionPredictor

MODEL = ROOT / DEFAULT_MODEL
PROBABILITY_TOLERANCE = 1e-4  # the same float32 model on the same prepared samples: only batching differs

PIPELINE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from transformers import pipeline
    if sys.argv[3] == "no-silero":
        sys.modules["silero_vad"] = None  # as if the wheel were not installed
    clips = np.load(sys.argv[2])
    classify = pipeline("audio-classification", model=sys.argv[1], trust_remote_code=True, top_k=None)
    assert "modeling_ser" not in sys.modules and "ser" not in sys.modules  # the model folder's own code
    for name in clips.files:
        try:
            print(json.dumps({name: {d["label"]: d["score"] for d in classify(clips[name])}}))
        except ValueError as error:  # the model's AudioError
            print(json.dumps({name: getattr(error, "reason").value}))
        except RuntimeError as error:
            print(json.dumps({name: "error: " + str(error)}))
""")


def fresh_pipeline(clips: dict[str, np.ndarray], tmp_path, silero: bool = True) -> dict:
    np.savez(tmp_path / "clips.npz", **clips)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(MODEL), str(tmp_path / "clips.npz"),
                           "silero" if silero else "no-silero"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: v for line in done.stdout.splitlines() if line.startswith("{") for k, v in json.loads(line).items()}


def real_clips(per_corpus: int) -> list:
    """Clips spread over every speaker of the three corpora (a fixed stride through each sorted corpus)."""
    picked = []
    for clips in (corpora.load_emodb(require(EMODB)), corpora.load_ravdess(require(RAVDESS)),
                  corpora.load_emovo(require(DATA / "emovo"))):
        picked += clips[::max(1, len(clips) // per_corpus)][:per_corpus]
    return picked


def padded(audio: np.ndarray, rng) -> np.ndarray:
    """2 s of white noise at -50 dBFS RMS before and after."""
    noise = lambda: (10 ** (-50 / 20) * rng.standard_normal(32000)).astype(np.float32)  # noqa: E731
    return np.concatenate([noise(), audio, noise()])


@pytest.mark.slow  # 200 clips through both paths: about a minute
def test_stock_pipeline_gives_the_predictors_probabilities_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    clips = {}
    for i, clip in enumerate(real_clips(64)):  # 192 clips, every other one padded with noise
        audio = load_audio(clip.path)
        clips[f"{clip.corpus}-{Path(clip.path).stem}"] = padded(audio, rng) if i % 2 else audio
    for i, clip in enumerate(real_clips(3)[:8]):  # 0.1 s of speech: too short
        clips[f"short-{i}"] = load_audio(clip.path)[8000:9600]
    clips["silence"] = np.zeros(32000, np.float32)
    clips["noise"] = (0.01 * rng.standard_normal(48000)).astype(np.float32)
    assert len(clips) == 202

    got = fresh_pipeline(clips, tmp_path)
    predictor = EmotionPredictor.from_pretrained(MODEL, runtime="fp32")
    compared = 0
    for name, audio in clips.items():
        try:
            want = predictor.classify_batch([audio])[0]
        except AudioError as error:
            assert got[name] == error.reason.value, name
            continue
        assert max(abs(got[name][label] - want[label]) for label in want) <= PROBABILITY_TOLERANCE, name
        compared += 1
    assert compared == 192
    assert [got[f"short-{i}"] for i in range(8)] == ["too short"] * 8
    assert (got["silence"], got["noise"]) == ("silent", "no speech")


def test_training_prepares_a_file_as_the_pipeline_does():
    """The training path (the corpus read as a dataset, each clip prepared by the model's extractor, then its
    features) and the stock path (the extractor on the decoded file) give identical model inputs."""
    extractor = AutoFeatureExtractor.from_pretrained(MODEL, trust_remote_code=True)
    clips = real_clips(2)
    table = dataset.from_clips(clips)
    trained = [extractor([prepared], sampling_rate=16000, return_tensors="pt", prepare_speech=False)
               for prepared in prepared_audio(table, extractor)]
    trimmed = 0
    for clip, inputs in zip(clips, trained):
        audio = load_audio(clip.path)
        served = extractor([audio], sampling_rate=16000, return_tensors="pt")
        for key in ("input_features", "attention_mask"):
            assert torch.equal(inputs[key], served[key]), (clip.path, key)
        whole = extractor([audio], sampling_rate=16000, return_tensors="pt", prepare_speech=False)
        trimmed += inputs["input_features"].shape[-1] < whole["input_features"].shape[-1]
    assert trimmed >= len(clips) // 2  # the preparation did cut silence away


def test_a_missing_speech_detector_is_named(tmp_path):
    clip = load_audio(EMODB / "wav" / "03a01Wa.wav")
    got = fresh_pipeline({"clip": clip}, tmp_path, silero=False)
    assert got["clip"].startswith("error: ") and "pip install silero-vad" in got["clip"]
