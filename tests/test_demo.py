"""ser/demo/analysis.py, what the demo does with audio: checks in plain words, the analysis of an upload, the live session.
Real Emo-DB speech and the embedded default model."""

import numpy as np
import pytest
import soundfile as sf

from helpers import DATA, EMODB, ROOT, require

from ser.core import defaults
from ser.demo import analysis as demo
from ser.inference import timeline
from ser.core.audio import load_audio
from ser.core.defaults import DEFAULT_MODEL
from ser.inference.predictor import EmotionPredictor, InputPolicy
from ser.inference.rows import Segment


@pytest.fixture(scope="module")
def predictor():
    return EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL, runtime="fp32")  # the runtimes: test_runtime_onnx


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
    assert analysis.recording is None
    assert analysis.scores == pytest.approx(predictor.classify_file(path), abs=1e-6)
    assert analysis.uncertain == predictor.is_uncertain(analysis.scores)
    assert analysis.headline == max(analysis.scores, key=analysis.scores.get) and analysis.measure == "probability"
    assert demo.headline_text(analysis).endswith(f"probability of {analysis.scores[analysis.headline]:.0%}.")


def test_a_padded_clip_is_shown_as_the_clip(predictor, speech, tmp_path):
    """Near-silence around a clip makes the file longer than a segment, not a recording of several: the page still
    shows the probabilities of its one speech segment (not shares of speech time), with the clip's label."""
    quiet = np.random.default_rng(0).normal(0, 10 ** (-60 / 20), 48000).astype(np.float32)
    clip = speech[0]
    path = write(tmp_path / "padded.wav", np.concatenate([quiet, clip, quiet]))
    analysis = demo.analyse(predictor, demo.check_recording(path), 6.0, 10.0)
    assert demo.check_recording(path).seconds > 6.0
    assert analysis.measure == "probability" and analysis.recording is None
    [segment] = predictor.timeline(path, 6.0)
    assert analysis.scores == segment.scores
    alone = predictor.classify_array(clip, 16000)  # an Emo-DB clip of 1.9 s (how close: benchmarks/robustness.py)
    assert max(alone, key=alone.get) == analysis.headline


def test_a_long_recording_is_headlined_by_its_timeline(predictor, speech, tmp_path):
    """The headline, the scores, the unsure share and the plotted segments all come from one summary: the share of
    the speech time each emotion is on top, the emotion holding at least half of it, else "mixed"."""
    gap = np.zeros(8000, dtype=np.float32)
    path = write(tmp_path / "talk.wav", np.concatenate([speech[0], gap, speech[1], gap, speech[2]] * 2))
    recording = demo.check_recording(path)
    analysis = demo.analyse(predictor, recording, 6.0, 10.0)
    raw = list(predictor.timeline(path, 6.0))
    assert len(raw) >= 3
    summary = analysis.recording
    assert summary == timeline.summarise(raw, predictor.uncertain_below, 10.0)
    assert analysis.scores == {label: summary.shares.get(label, 0.0) for label in predictor.labels}
    top = max(summary.shares, key=summary.shares.get)
    assert analysis.headline == (top if summary.shares[top] >= timeline.DOMINANT_SHARE else timeline.MIXED)
    assert analysis.measure == "share of speech time"
    text = demo.summary_text(summary, recording.seconds)
    assert f"in {len(raw)} segments" in text and "Share of the speech time each emotion is on top:" in text


def rows_of(*segments):
    """Segments from (start, end, label, probability of that label)."""
    names = ("angry", "sad", "fear")
    return [Segment.of({name: top if name == label else (1 - top) / 2 for name in names}, 0.5, start=start, end=end)
            for start, end, label, top in segments]


def test_headline_is_dominant_or_mixed_and_unsure_is_noted_at_any_length():
    labels = ["angry", "sad", "fear"]
    dominant = demo.Analysis.of_recording(timeline.summarise(rows_of((0, 6, "angry", 0.9), (7, 10, "sad", 0.4)),
                                                             0.5), labels)
    assert dominant.headline == "angry" and dominant.scores == {"angry": 2 / 3, "sad": 1 / 3, "fear": 0.0}
    assert not dominant.uncertain and dominant.notes == []
    assert demo.headline_text(dominant) == "**Mostly angry:** on top for 67% of the speech time."
    mixed = demo.Analysis.of_recording(timeline.summarise(
        rows_of((0, 4, "angry", 0.4), (5, 9, "sad", 0.4), (9.5, 12, "fear", 0.9)), 0.5), labels)
    assert mixed.headline == timeline.MIXED and mixed.uncertain
    assert demo.headline_text(mixed).startswith("**Mixed emotions:**")
    assert mixed.notes == ["The model is unsure for 76% of the speech time: no emotion reaches 50% there."]
    for seconds in (60, 600):  # the note does not depend on the length
        long = rows_of(*[(i * 7, i * 7 + 6, "sad", 0.9 if i % 4 == 0 else 0.4) for i in range(seconds // 7)])
        assert demo.Analysis.of_recording(timeline.summarise(long, 0.5), labels).uncertain


def test_smoothing_stays_within_a_stretch_of_speech_and_the_summary_reads_what_is_plotted():
    """A short turn after a pause keeps its own emotion however wide the window; the pieces of one stretch are
    averaged; the labels, the unsure share and the shares all follow the smoothed scores the plot draws."""
    rows = rows_of((0, 6, "angry", 0.9), (6, 12, "angry", 0.9), (12, 15, "sad", 0.6), (16, 18, "sad", 0.9))
    summary = timeline.summarise(rows, 0.5, smooth_seconds=30)
    assert summary.smoothed_seconds == 30
    assert [row.label for row in summary.segments] == ["angry", "angry", "angry", "sad"]
    assert summary.segments[3].scores == rows[3].scores  # alone in its stretch: untouched
    mean = (0.05 * 12 + 0.6 * 3) / 15  # sad, duration-weighted over the first stretch
    assert summary.segments[2].scores["sad"] == pytest.approx(mean)
    plotted = [row for row in summary.segments if max(row.scores.values()) < 0.5]
    assert summary.unsure_share == pytest.approx(sum(r.seconds for r in plotted) / summary.speech_seconds)
    assert summary.shares == pytest.approx({"angry": 15 / 17, "sad": 2 / 17})
    assert timeline.summarise(rows, 0.5).segments == rows  # no smoothing: the segments as classified


def test_plot_table_and_legend_hold_only_emotions_that_are_top_somewhere():
    rows = [Segment.of({"sad": 0.7, "angry": 0.3, "fear": 0.0}, 0.5, start=0.0, end=2.0, text="so sad"),
            Segment.of({"sad": 0.1, "angry": 0.45, "fear": 0.45}, 0.5, start=3.0, end=5.0)]
    table = demo.timeline_table(rows)
    assert sorted(set(table["emotion"])) == ["angry", "sad"]
    # each segment held from its start to its end: one segment is a visible line, not a point
    assert table["time"] == [0.0, 0.0, 2.0, 2.0, 3.0, 3.0, 5.0, 5.0]
    assert table["probability"][:4] == [0.7, 0.3, 0.7, 0.3]
    assert table["words"] == ["so sad"] * 4 + [""] * 4
    summary = timeline.summarise(rows, 0.5)
    assert demo.summary_text(summary, 6.0) == (
        "**Speech:** 4 s of 6 s, in 2 segments.  \n**Share of the speech time each emotion is on top:** sad 50% · "
        "angry 50%.  \n**Unsure** (no emotion reaches 50%): 50% of the speech time.")
    assert [timeline.clock(s) for s in (0, 59.6, 75, 600, 3725)] == ["0:00", "1:00", "1:15", "10:00", "1:02:05"]
    colored = demo.summary_text(summary, 6.0, {"sad": "#111111", "angry": "#222222", "fear": "#333333"})
    assert '<span class="swatch" style="color: #111111">■</span> sad 50%' in colored


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
    assert rows[-1] is not None and rows[-1].end == pytest.approx(session.seconds)
    window = session.last(demo.LIVE_WINDOW_SECONDS)
    assert window.size == int(demo.LIVE_WINDOW_SECONDS * 16000)
    assert rows[-1].scores == pytest.approx(predictor.classify_array(window, 16000), abs=1e-6)
    recording = session.save()
    assert recording.seconds == pytest.approx(session.seconds, abs=1e-3)
    saved = sf.read(recording.path, dtype="float32")[0]
    assert np.abs(saved[: window.size] - session.last(1e9)[: window.size]).max() < 1e-3  # what it heard, as PCM
    with pytest.raises(demo.DemoError, match="sampling rate"):
        session.add(44100, pcm[:100])


def test_live_session_waits_for_speech_and_stops_at_the_limit(predictor, speech):
    session = demo.LiveSession(16000)
    session.add(16000, np.zeros(16000, dtype=np.int16))
    assert session.listen(predictor) is None and session.rows == []
    speaking = demo.LiveSession(16000)
    speaking.add(16000, (speech[0][: int(0.9 * 16000)] * 32767).astype(np.int16))
    assert speaking.listen(predictor) is None  # not before LIVE_FIRST_SECONDS: a reading of 0.4 s says little
    session.add(16000, np.zeros((int(demo.MAX_SECONDS * 16000), 2), dtype=np.int16))  # stereo, past the limit
    assert session.seconds == demo.MAX_SECONDS


CORPUS_FILES = {"emodb": "wav/*.wav", "ravdess": "Actor_*/*.flac", "emovo": "*/*.flac"}


@pytest.mark.parametrize("corpus", list(CORPUS_FILES))
def test_speech_in_noise_at_5_db_snr_is_never_refused(predictor, corpus):
    """Real clips (20 spread over the corpus) with white noise 5 dB below their power are classified."""
    files = sorted(require(EMODB.parent / corpus).glob(CORPUS_FILES[corpus]))
    rng = np.random.default_rng(0)
    for path in [files[i] for i in np.linspace(0, len(files) - 1, 20).astype(int)]:
        audio = sf.read(path, dtype="float32")[0]
        noise = rng.standard_normal(audio.size).astype(np.float32) * np.sqrt(np.mean(audio ** 2) / 10 ** 0.5)
        scores = predictor.classify_array(audio + noise, 16000)  # raises for "no speech"
        assert abs(sum(scores.values()) - 1) < 1e-4, path.name


def coloured_noise(kind: str, seconds: float, rms_dbfs: float, rng) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) noise at an RMS level."""
    white = rng.standard_normal(int(seconds * 16000))
    spectrum = np.fft.rfft(white)
    frequencies = np.maximum(np.fft.rfftfreq(white.size, 1 / 16000), 1.0)
    noise = np.fft.irfft(spectrum / frequencies ** {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind], white.size)
    return (noise / np.sqrt(np.mean(noise ** 2)) * 10 ** (rms_dbfs / 20)).astype(np.float32)


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_pure_noise_and_silence_are_refused_in_plain_words(predictor, tmp_path, kind):
    rng = np.random.default_rng(1)
    recordings = [coloured_noise(kind, 3.0, level, rng) for level in (-60.0, -40.0, -20.0, -6.0)]
    recordings.append(np.zeros(3 * 16000, dtype=np.float32))
    for i, audio in enumerate(recordings):
        recording = demo.check_recording(write(tmp_path / f"noise-{i}.wav", audio, subtype="FLOAT"))
        with pytest.raises(demo.DemoError) as caught:
            demo.analyse(predictor, recording, 6.0, 10.0)
        assert str(caught.value) == demo.NO_SPEECH, i


def test_the_level_of_a_clip_does_not_change_its_answer(predictor, speech):
    """The default model was trained on clips cut to their speech and brought to one level, and is served so: a
    copy 12 dB quieter, or at a -48 dBFS peak, gets the same probabilities."""
    assert predictor.preparation.level_normalisation and predictor.preparation.trim_silence
    for audio in speech:
        scores = predictor.classify_array(audio, 16000)
        for copy in (audio * 10 ** (-12 / 20), audio / np.abs(audio).max() * 10 ** (-48 / 20)):
            assert predictor.classify_array(copy.astype(np.float32), 16000) == pytest.approx(scores, abs=2e-3)


def test_too_short_quotes_the_models_own_minimum(speech, tmp_path):
    """The log-mel CNN needs 0.325 s (its blocks halve the frames), more than the predictor's general 0.25 s: the
    words say the model's own minimum."""
    cnn = EmotionPredictor.from_pretrained(ROOT / "models" / "ser-cnn-emodb", runtime="fp32")
    assert cnn.min_seconds > InputPolicy().min_seconds
    recording = demo.check_recording(write(tmp_path / "short.wav", speech[0][: int(0.3 * 16000)]))
    with pytest.raises(demo.DemoError) as caught:
        demo.analyse(cnn, recording, 6.0, 10.0)
    assert str(caught.value).startswith(f"The recording is too short. Please record at least {cnn.min_seconds:g} s")


def test_refusals_carry_their_reason(predictor, speech):
    """Each refusal is an AudioError whose `reason` says why (and `details` the numbers): callers branch on it, never
    on the message's words."""
    from ser.core.audio import AudioError, Reason

    noise = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    cases = [(np.zeros(0, np.float32), Reason.EMPTY), (np.full(16000, np.nan, np.float32), Reason.NOT_FINITE),
             (speech[0][:2000], Reason.TOO_SHORT), (np.zeros(32000, np.float32), Reason.SILENT),
             (noise, Reason.NO_SPEECH), (np.tile(speech[0], 40), Reason.TOO_LONG)]
    for audio, reason in cases:
        with pytest.raises(AudioError) as caught:
            predictor.classify_array(audio, 16000)
        assert caught.value.reason is reason, (reason, str(caught.value))
        if reason is not Reason.TOO_SHORT:  # (its words carry the model's minimum: the test above)
            assert demo.plain_message(caught.value) == demo.PLAIN_WORDS[reason]
    with pytest.raises(AudioError) as caught:
        predictor.classify_array(speech[0][:2000], 16000)
    assert caught.value.details == {"seconds": 2000 / 16000, "minimum_seconds": predictor.min_seconds}


def test_the_input_policy_given_is_the_one_applied_narrowed_by_the_model(speech):
    """A stricter policy is applied as given; a looser one is narrowed to what the model can take (the default
    Whisper model's encoder holds 30 s)."""
    from ser.core.audio import AudioError, Reason

    strict = EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL, runtime="fp32", policy=InputPolicy(max_seconds=2.0))
    clip = np.tile(speech[0], 2)[: 3 * 16000]
    with pytest.raises(AudioError) as caught:
        strict.classify_array(clip, 16000)
    assert caught.value.reason is Reason.TOO_LONG and caught.value.details["maximum_seconds"] == 2.0
    loose = EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL, runtime="fp32",
                                             policy=InputPolicy(max_seconds=600.0))
    assert loose.policy.max_seconds == 30.0 and loose.classify_array(clip, 16000)


def test_microphone_pcm_is_scaled_as_the_predictor_scales_it(predictor, speech):
    """One PCM scale (2**15 for int16) for the live microphone and for arrays handed to the predictor."""
    pcm = np.array([[-32768, -32768], [16384, 16384], [0, 0]], dtype=np.int16)  # stereo, as a browser may send
    np.testing.assert_array_equal(demo.as_float(pcm), [-1.0, 0.5, 0.0])
    assert demo.as_float(np.zeros((0, 2), np.int16)).size == 0  # an empty chunk is no audio yet
    spoken = (speech[0] * 32767).astype(np.int16)
    assert predictor.classify_array(spoken, 16000) == predictor.classify_array(demo.as_float(spoken), 16000)


def test_a_shuffled_recording_of_the_three_corpora_agrees_with_its_clips(predictor, tmp_path):
    """Clips of Emo-DB, RAVDESS and EMOVO in shuffled order with 1 s pauses, analysed as the demo does (its default
    segment length and smoothing): each segment gets the label its own audio gets alone, and nearly always the label
    of the clip it lies in (benchmarks/timeline_agreement.py measures 48 clips)."""
    from ser.data.corpora import load_corpus

    rng = np.random.default_rng(1)
    clips = []
    for name in ("emodb", "ravdess", "emovo"):
        found = [c for c in load_corpus(name, require(DATA / name)) if c.label in predictor.labels]
        clips += [found[i] for i in rng.choice(len(found), 8, replace=False)]
    rng.shuffle(clips)
    pause, parts, spans = np.zeros(16000, np.float32), [], []
    for clip in clips:
        audio = load_audio(clip.path)
        start = sum(part.size for part in parts)
        spans.append((start, start + audio.size))
        parts += [audio, pause]
    recording = np.concatenate(parts)
    path = write(tmp_path / "shuffled.wav", recording, subtype="FLOAT")
    analysis = demo.analyse(predictor, demo.check_recording(path), defaults.SEGMENT_SECONDS, defaults.SMOOTH_SECONDS)
    segments = analysis.recording.segments
    alone = [predictor.classify_file(clip.path) for clip in clips]
    with_clip = 0
    for segment in segments:
        a, b = round(segment.start * 16000), round(segment.end * 16000)
        own = predictor.classify_array(recording[a:b], 16000)
        assert segment.label == max(own, key=own.get), segment
        inside = max(range(len(clips)), key=lambda i: min(b, spans[i][1]) - max(a, spans[i][0]))
        with_clip += segment.label == max(alone[inside], key=alone[inside].get)
    assert with_clip / len(segments) >= 0.9, (with_clip, len(segments))
