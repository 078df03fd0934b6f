"""The live microphone's transport (ser/demo/live_capture.py, ser/demo/live_page.py): numbered pieces of PCM from the page's
recorder reach the session whole, once each, in order, whatever is sent again; what is saved is every sample. The
browser side is tested in test_app.py (Chromium's fake microphone)."""

import base64
import json

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser.demo import analysis as demo
from ser.demo.live_capture import BUSY, LOST, Captures
from ser.demo.live_page import Report


def piece(key: str, number: int, pcm: np.ndarray) -> dict:
    return {"key": key, "piece": number, "pcm": base64.b64encode(pcm.astype("<i2").tobytes()).decode()}


@pytest.fixture
def pcm():
    """3 s of a chirp at 44.1 kHz, int16, as the recorder sends it."""
    t = np.arange(3 * 44100) / 44100
    return (np.sin(2 * np.pi * (200 + 300 * t) * t) * 0.5 * 32767).astype(np.int16)


def test_pieces_sent_again_are_added_once_and_the_saved_audio_is_every_sample(pcm):
    captures = Captures()
    key = captures.open(44100)["key"]
    sizes = np.random.default_rng(0).integers(200, 30000, size=100).cumsum()
    parts = np.split(pcm, sizes[sizes < pcm.size])
    for number, part in enumerate(parts):
        answer = captures.receive(piece(key, number, part))
        assert answer["next"] == number + 1 and not answer["full"]
        if number % 3 == 0:  # the answer was lost: the page sends the same piece again
            assert captures.receive(piece(key, number, part))["next"] == number + 1
    assert captures.receive(piece(key, len(parts) + 1, parts[0])) == {"error": LOST}  # never a gap
    session = captures.close(key)
    assert captures.get(key) is None and captures.receive(piece(key, len(parts), parts[0])) == {"error": LOST}
    whole = soxr.resample(pcm.astype(np.float32) / 32768, 44100, 16000)
    np.testing.assert_array_equal(session.last(1e9), whole)  # the streaming resampler, flushed, is the one-shot one
    recording = session.save()
    saved = sf.read(recording.path, dtype="float32")[0]
    assert saved.size == whole.size == round(pcm.size * 16000 / 44100)
    assert np.abs(saved - whole).max() <= 1 / 32768  # as 16-bit PCM
    assert recording.seconds == pytest.approx(3.0, abs=1e-4)


def test_bad_pieces_and_keys_are_refused_in_words():
    captures = Captures()
    key = captures.open(48000)["key"]
    for bad in [{}, {"key": key, "piece": 0, "pcm": "not base64!"}, {"key": key, "piece": "x", "pcm": ""}]:
        assert "cannot read" in captures.receive(bad)["error"]
    assert captures.receive({"key": "guessed", "piece": 0, "pcm": ""}) == {"error": LOST}
    assert captures.receive({"key": key, "piece": 0, "pcm": ""})["next"] == 1  # an empty piece is no audio yet
    for rate in [0, 44100.5, "44100", 10**7, None]:
        assert "sampling rate" in captures.open(rate)["error"]
    assert captures.close("guessed") is None


def test_too_many_recordings_wait_until_an_idle_one_is_dropped():
    captures = Captures(most=2, idle_seconds=60, silent_seconds=10)
    first, second = captures.open(16000)["key"], captures.open(16000)["key"]
    for key in (first, second):
        captures.receive(piece(key, 0, np.zeros(1600, np.int16)))
    assert captures.open(16000) == {"error": BUSY}
    captures.captures[second].touched -= 59
    assert captures.open(16000) == {"error": BUSY}
    captures.captures[first].touched -= 61  # its page was closed a minute ago
    third = captures.open(16000)["key"]
    assert captures.get(first) is None and captures.get(second) is not None
    captures.captures[third].touched -= 11  # opened, and nothing sent for 10 s
    assert "key" in captures.open(16000) and captures.get(third) is None and captures.get(second) is not None


def test_a_recording_stops_growing_at_the_limit():
    captures = Captures()
    key = captures.open(16000)["key"]
    second = np.zeros(16000, np.int16)
    for number in range(demo.MAX_SECONDS + 2):
        answer = captures.receive(piece(key, number, second))
    assert answer["full"] and answer["seconds"] == demo.MAX_SECONDS


def test_the_recorders_report_is_read_defensively():
    assert Report.parse(json.dumps({"key": "k", "recorded": 12.5, "heard": 12.25, "error": None,
                                    "stopped": True})) == Report("k", 12.5, 12.25, None, 0.0, True)
    for text in [None, "", "not json", "[1, 2]", json.dumps({"key": 3, "recorded": "NaN", "stopped": "yes"})]:
        assert Report.parse(text) == Report()
