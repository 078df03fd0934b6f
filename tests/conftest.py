"""Shared fixtures (helpers.py holds what test files import): real clips, and the environment every test runs in."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import EMODB, require

torch.set_num_threads(1)  # tiny models gain nothing from more, and threads that spin against other processes lose much


@pytest.fixture(scope="session")
def emodb_clips():
    """Four real Emo-DB clips (two angry, two sad) as 16 kHz float arrays, labels 0/1."""
    names = ["03a01Wa.wav", "03a05Wa.wav", "03a02Ta.wav", "03a04Ta.wav"]
    wav_dir = require(EMODB / "wav")
    audio = [sf.read(wav_dir / name, dtype="float32")[0] for name in names]
    return audio, np.array([0, 0, 1, 1])
