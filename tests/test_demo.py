"""ser/demo.py, what the demo does with audio: checks in plain words, the analysis of an upload, the live session.
Real Emo-DB speech and the embedded default model."""

import numpy as np
import pytest
import soundfile as sf

from conftest import EMODB, ROOT, require

from ser import demo, timeline
from ser.defaults import DEFAULT_MODEL
from ser.predictor import EmotionPredictor


@pytest.fixture(scope="module")
def predictor():
    return EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL)


@pytest.fixture(scope="module")
def speech():
    wav = require(EMODB / "wav")
    return [sf.read(wav / name, dtype="float32")[0] for name in ("03a01Wa.wav", "03a02Ta.wav", "08a01Na.wav")]


def write(path, audio, rate=16000, subtype="PCM_16"):
    sf.write(path, audio, rate, subtype=subtype)
    return str(path)


def test_a_short_recording_gets_the_whole_clip_label(predictor, speech, tmp_path):
    path = write(tmp_path / "clip.wav", speech[0])
    analysis = demo.analyse(predictor, demo.check_recording(path), 6.0, 10.0)
    assert analysis.rows is None
    assert analysis.scores == pytest.approx(predictor.classify_file(path), abs=1e-6)
    assert analysis.uncertain == predictor.is_uncertain(analysis.scores)


def test_a_long_recording_is_labelled_by_its_segments_weighted_by_duration(predictor, speech, tmp_path):
    gap = np.zeros(8000, dtype=np.float32)
    path = write(tmp_path / "talk.wav", np.concatenate([speech[0], gap, speech[1], gap, speech[2]] * 2))
    recording = demo.check_recording(path)
    analysis = demo.analyse(predictor, recording, 6.0, 10.0)
    raw = list(predictor.timeline(path, 6.0))
    assert len(raw) >= 3
    weights = np.array([row["end"] - row["start"] for row in raw])
    for label, score in analysis.scores.items():
        expected = sum(row["scores"][label] * w for row, w in zip(raw, weights)) / weights.sum()
        assert score == pytest.approx(expected, abs=1e-6)
    assert analysis.rows == timeline.smooth(raw, 10.0)  # the timeline shown is smoothed; the label is not
    text = demo.summary_text(analysis, recording.seconds)
    assert f"in {len(raw)} segments" in text and "Time per emotion:" in text


def test_plot_table_and_legend_hold_only_emotions_that_are_top_somewhere():
    rows = [{"start": 0.0, "end": 2.0, "label": "sad", "uncertain": False, "scores": {"sad": 0.7, "angry": 0.3, "fear": 0.0}},
            {"start": 3.0, "end": 5.0, "label": "angry", "uncertain": True, "scores": {"sad": 0.1, "angry": 0.45, "fear": 0.45}}]
    table = demo.timeline_table(rows)
    assert sorted(set(table["emotion"])) == ["angry", "sad"]
    assert table["time"] == [1.0, 1.0, 4.0, 4.0] and demo.time_axis_title(rows) == "time (s)"
    long = [{**row, "start": row["start"] + 600, "end": row["end"] + 600} for row in rows]
    assert demo.timeline_table(long)["time"][0] == pytest.approx(601 / 60, abs=1e-3)
    assert demo.time_axis_title(long) == "time (min)"
    analysis = demo.Analysis({"sad": 0.4, "angry": 0.4, "fear": 0.2}, True, rows)
    assert demo.summary_text(analysis, 6.0) == ("**Speech:** 4 s of 6 s, in 2 segments.  \n**Time per emotion:** "
                                                "sad 50% · angry 50%.  \n**Unsure:** 50% of the speech time.")


def test_damaged_samples_are_counted_and_quiet_speech_noted(predictor, speech, tmp_path):
    damaged = speech[0].copy()
    damaged[::10] = np.nan
    recording = demo.check_recording(write(tmp_path / "damaged.wav", damaged, subtype="FLOAT"))
    assert recording.notes == [f"{np.isnan(damaged).mean():.1%} of the samples were damaged (not a number) and "
                               "were treated as silence."]
    assert demo.invalid_share(write(tmp_path / "clean.wav", speech[0])) == 0.0
    quiet = speech[0] / np.abs(speech[0]).max() * 10 ** (-50 / 20)
    analysis = demo.analyse(predictor, demo.check_recording(write(tmp_path / "quiet.wav", quiet, subtype="FLOAT")),
                            6.0, 10.0)
    assert any("very quiet" in note for note in analysis.notes)
    loud = demo.analyse(predictor, demo.check_recording(write(tmp_path / "loud.wav", speech[0])), 6.0, 10.0)
    assert not any("very quiet" in note for note in loud.notes)


@pytest.mark.parametrize("audio, message", [
    (np.zeros(32000, dtype=np.float32), demo.NO_SPEECH),
    (np.full(16000, 0.3, dtype=np.float32), demo.NO_SPEECH),  # a steady tone-like level, nothing louder
    (None, "too short"),
])
def test_unusable_recordings_are_refused_in_plain_words(predictor, speech, tmp_path, audio, message):
    audio = speech[0][:2000] if audio is None else audio
    recording = demo.check_recording(write(tmp_path / "bad.wav", audio))
    with pytest.raises(demo.DemoError) as caught:
        demo.analyse(predictor, recording, 6.0, 10.0)
    assert message in str(caught.value) and "dBFS" not in str(caught.value) and "bad.wav" not in str(caught.value)


def test_live_session_follows_the_last_seconds_and_saves_what_it_heard(predictor, speech):
    import soxr

    at_48k = soxr.resample(np.concatenate(speech), 16000, 48000)
    pcm = (at_48k * 32767).astype(np.int16)
    session = demo.LiveSession(48000)
    rows = []
    for start in range(0, pcm.size, 24000):  # half-second chunks, as the browser sends them
        session.add(48000, pcm[start:start + 24000])
        rows.append(session.listen(predictor))
    assert session.seconds == pytest.approx(pcm.size / 48000, abs=0.05)  # the streaming resampler holds ~25 ms back
    assert rows[-1] is not None and rows[-1]["end"] == pytest.approx(session.seconds)
    window = session.last(demo.LIVE_WINDOW_SECONDS)
    assert window.size == int(demo.LIVE_WINDOW_SECONDS * 16000)
    assert rows[-1]["scores"] == pytest.approx(predictor.classify_array(window, 16000), abs=1e-6)
    recording = session.save()
    assert recording.seconds == pytest.approx(session.seconds, abs=1e-3)
    saved = sf.read(recording.path, dtype="float32")[0]
    assert np.abs(saved[: window.size] - session.last(1e9)[: window.size]).max() < 1e-3  # what it heard, as PCM
    with pytest.raises(demo.DemoError, match="sampling rate"):
        session.add(44100, pcm[:100])


def test_live_session_waits_for_speech_and_stops_at_the_limit(predictor):
    session = demo.LiveSession(16000)
    session.add(16000, np.zeros(16000, dtype=np.int16))
    assert session.listen(predictor) is None and session.rows == []
    session.add(16000, np.zeros((int(demo.MAX_SECONDS * 16000), 2), dtype=np.int16))  # stereo, past the limit
    assert session.seconds == demo.MAX_SECONDS
