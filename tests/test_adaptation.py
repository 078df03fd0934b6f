"""ser-adapt end to end on the embedded default model and real EMOVO recordings: the adapted folder loads (the
predictor and the stock pipeline), its statistics are those of the given speech (computed here independently, from
the encoder's frames of each prepared clip), its card says what it was adapted to, and bad input is refused."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor

from helpers import DATA, ROOT, require
from modeling_ser import FRAME_STATS_EPS
from ser.core.audio import load_audio
from ser.core.defaults import DEFAULT_MODEL
from ser.inference.predictor import EmotionPredictor

MODEL = ROOT / DEFAULT_MODEL


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapt")
    recordings = sorted(require(DATA / "emovo" / "f1").glob("*.flac"))[:6]
    sf.write(folder / "silence.wav", np.zeros(16000, np.float32), 16000)  # refused: skipped and named, not fatal
    done = subprocess.run([sys.executable, "-m", "ser.training.adaptation", str(MODEL), *map(str, recordings),
                           str(folder / "silence.wav"), "--output", str(folder / "model")],
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "model", recordings


def test_adapted_statistics_are_those_of_the_given_speech(adapted):
    folder, recordings = adapted
    predictor = EmotionPredictor.from_pretrained(folder, runtime="fp32")
    model = predictor.model
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    frames = []
    with torch.no_grad():
        for path in recordings:
            inputs = extractor([load_audio(path)], sampling_rate=16000, return_tensors="pt")
            hidden = model.base_model(inputs["input_features"], output_hidden_states=True).hidden_states
            frames.append(hidden[model.config.feature_layer][0].double())
    frames = torch.cat(frames)
    want = torch.stack([frames.mean(0), (frames.var(0, unbiased=False) + FRAME_STATS_EPS).sqrt()]).float()
    torch.testing.assert_close(model.frame_stats, want, rtol=1e-4, atol=1e-4)
    original = EmotionPredictor.from_pretrained(MODEL, runtime="fp32").model.frame_stats
    assert (original - want).abs().max() > 100 * 1e-4  # Italian speech is not the training mixture: it moved
    scores = predictor.classify_file(recordings[0])
    assert abs(sum(scores.values()) - 1) < 1e-5


def test_the_predictor_api_adapts_in_memory_as_the_saved_folder(adapted):
    """`adapted_predictor` on the same recordings: the saved folder's statistics, and its answers on the default
    runtime (ONNX, exported from the adapted weights) within float32 export rounding of the folder's fp32 ones."""
    from ser.core import defaults
    from ser.training.adaptation import adapted_predictor

    folder, recordings = adapted
    saved = EmotionPredictor.from_pretrained(folder, runtime="fp32")
    in_memory = adapted_predictor(MODEL, recordings)
    assert in_memory.runtime == defaults.RUNTIME
    unadapted = EmotionPredictor.from_pretrained(MODEL, runtime="fp32")
    for path in recordings[:3]:
        want, got = saved.classify_file(path), in_memory.classify_file(path)
        assert max(abs(want[k] - got[k]) for k in want) < 1e-4
        before = unadapted.classify_file(path)
        assert max(abs(want[k] - before[k]) for k in want) > 1e-3  # the adaptation reached the answers


def test_the_card_says_what_it_was_adapted_to(adapted):
    folder, recordings = adapted
    results = json.loads((folder / "results.json").read_text())
    adaptation = results["adaptation"]
    assert adaptation["files"] == len(recordings) and adaptation["adapted_from"] == str(MODEL)
    assert [s.split(": ")[1] for s in adaptation["skipped"]] == ["silent"]
    seconds = sum(load_audio(p).size for p in recordings) / 16000
    assert 0.5 * seconds / 60 < adaptation["speech_minutes"] <= seconds / 60  # trimmed speech, not the files
    card = (folder / "README.md").read_text()
    assert f"re-estimated from {len(recordings)} of the user's recordings" in card and str(MODEL) in card


def test_bad_input_is_refused(tmp_path):
    from ser.training.adaptation import adapt

    with pytest.raises(FileNotFoundError, match="no such file"):
        adapt(MODEL, [tmp_path / "missing.wav"], tmp_path / "out")
    with pytest.raises(ValueError, match="must be a new folder"):
        adapt(MODEL, [tmp_path], MODEL)
    with pytest.raises(ValueError, match="no audio files"):
        adapt(MODEL, [tmp_path], tmp_path / "out")
