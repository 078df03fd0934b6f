"""The speech detectors (speech_ser.py: Silero VAD, the default, and the energy detector) on real Emo-DB, RAVDESS and
EMOVO clips: invariance to digital silence padding and to level, no speech in silence or stationary noise, speech in
noise, pause bridging, block-wise metering, and trimming of RAVDESS's long silent lead-in and tail."""

import math

import numpy as np
import pytest
import soundfile as sf

from helpers import DATA, EMODB, RAVDESS, require
import speech_ser as speech

EMOVO = DATA / "emovo"
SR = speech.SAMPLING_RATE
CORPUS_GLOBS = {"emodb": (EMODB, "wav/*.wav"), "ravdess": (RAVDESS, "Actor_*/*.flac"), "emovo": (EMOVO, "*/*.flac")}
# How far one end of the speech found can move when frames line up differently with the clip's ends: a speech frame
# may hang over the end of the clip by up to a frame (Silero's 32 ms is the longer), frames that straddle the clip's
# edge differ by up to another, and the margin is added beyond them.
EDGE_SAMPLES = int(round(speech.MARGIN_SECONDS * SR)) + 2 * speech.SILERO_FRAME
DETECTORS = [speech.DEFAULT, speech.ENERGY]
ENERGY = speech.ENERGY
PAD = 2 * SR  # 2 s of digital silence
# Padding by a whole number of both detectors' hops (10 ms and 32 ms): their frames line up with the clip's as before
ALIGNED_PAD = 12 * 2560


def read(path):
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SR and audio.ndim == 1
    return audio


def corpus_sample(corpus, count=12):
    """`count` clips spread evenly over the corpus's sorted file list (the first and the last included)."""
    root, pattern = CORPUS_GLOBS[corpus]
    files = sorted(require(root).glob(pattern))
    assert len(files) >= count
    return [files[i] for i in np.linspace(0, len(files) - 1, count).astype(int)]


def padded(audio, before=PAD, after=PAD):
    return np.concatenate([np.zeros(before, np.float32), audio, np.zeros(after, np.float32)])


def span(segments):
    return segments[0].start, segments[-1].end


def sounding(audio):
    """Without the exact zeros at either end (trim cuts them)."""
    nonzero = np.flatnonzero(audio)
    return audio[nonzero[0]:nonzero[-1] + 1] if nonzero.size else audio


def check_padding_invariance(audio, detector):
    """Trimming the clip padded with 2 s of digital silence on both sides gives the same samples as trimming the
    clip, up to where each end lands (EDGE_SAMPLES); what the padded trim holds beyond the clip is padding."""
    start, end = span(detector.segments(audio))
    assert np.array_equal(detector.trim(audio), sounding(audio[start:end]))
    long = padded(audio)
    padded_start, padded_end = (position - PAD for position in span(detector.segments(long)))
    assert abs(padded_start - start) <= EDGE_SAMPLES, (padded_start, start)
    assert abs(padded_end - end) <= EDGE_SAMPLES, (padded_end, end)
    expected = np.concatenate([np.zeros(max(0, -padded_start), np.float32),
                               audio[max(0, padded_start):min(audio.size, padded_end)],
                               np.zeros(max(0, padded_end - audio.size), np.float32)])
    trimmed_long = detector.trim(long)
    assert np.array_equal(trimmed_long, sounding(expected))
    assert abs(trimmed_long.size - (end - start)) <= 2 * EDGE_SAMPLES


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
@pytest.mark.parametrize("corpus", list(CORPUS_GLOBS))
def test_padding_with_digital_silence_barely_changes_trim(corpus, detector):
    for path in corpus_sample(corpus):
        audio = read(path)
        assert detector.segments(audio), path.name  # real speech is found
        check_padding_invariance(audio, detector)


# Clips of the full corpora (all 2563 were scanned) where padding once moved an end by far more than EDGE_SAMPLES:
# a speech region touching the clip's edge was dropped as a click, and the floor counted -100 dBFS as silence.
@pytest.mark.parametrize("corpus, name", [
    ("ravdess", "Actor_03/03-01-03-01-01-02-03.flac"),  # 1 s more at the start (the same speech frames, kept)
    ("ravdess", "Actor_08/03-01-06-02-02-02-08.flac"),  # 1.25 s more at the end
    ("emovo", "f1/tri-f1-b3.flac"),  # the floor moves, and with it the end of the speech by 0.17 s
])
def test_padding_invariance_on_former_failures(corpus, name):
    check_padding_invariance(read(require(CORPUS_GLOBS[corpus][0] / name)), ENERGY)


def scaled_to_peak(audio, dbfs):
    return (audio * (10 ** (dbfs / 20) / np.abs(audio).max())).astype(np.float32)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
@pytest.mark.parametrize("corpus", list(CORPUS_GLOBS))
def test_quiet_copy_gives_the_same_segments(corpus, detector):
    for path in corpus_sample(corpus, 6):
        audio = read(path)
        assert detector.segments(scaled_to_peak(audio, -48.0)) == detector.segments(audio), path.name


@pytest.mark.parametrize("corpus", list(CORPUS_GLOBS))
def test_quiet_copy_keeps_its_speech(corpus):
    """At a -48 dBFS peak speech is still found, around the clip's loudest frame (an absolute threshold would find
    nothing)."""
    for path in corpus_sample(corpus, 6):
        quiet = scaled_to_peak(read(path), -48.0)
        segments = ENERGY.segments(quiet)
        loudest = int(np.argmax(speech.frame_levels(quiet))) * int(speech.HOP_SECONDS * SR)
        assert any(segment.start <= loudest < segment.end for segment in segments), path.name


def test_thresholds_are_relative_to_the_clip():
    """Scaling by a power of two (exact in floating point) that leaves every audible frame above the digital-silence
    line shifts every level by the same number of dB, so the segments do not move."""
    silence_line = speech.DIGITAL_SILENCE_DB + 20
    step_db = 20 * math.log10(2)
    checked = 0
    for corpus in CORPUS_GLOBS:
        for path in corpus_sample(corpus, 6):
            audio = read(path)
            levels = speech.frame_levels(audio)
            headroom = levels[levels > silence_line].min() - silence_line
            halvings = min(8, int(headroom // step_db))
            if halvings == 0:
                continue
            quieter = audio * np.float32(2.0 ** -halvings)
            assert ENERGY.segments(quieter) == ENERGY.segments(audio), (path.name, halvings)
            checked += 1
    assert checked >= 10  # Emo-DB and EMOVO clips have room; RAVDESS's near-silence sits close to the line


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_digital_silence_has_no_speech(detector):
    for audio in (np.zeros(3 * SR, np.float32), np.zeros(100, np.float32), np.zeros(0, np.float32)):
        assert detector.segments(audio) == []
        trimmed = detector.trim(audio)
        assert trimmed.size == audio.size and np.array_equal(trimmed, audio)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
@pytest.mark.parametrize("rms", [0.3, 1e-2, 1e-4, 1e-5])
def test_stationary_white_noise_has_no_speech(rms, detector):
    noise = (np.random.default_rng(7).standard_normal(3 * SR) * rms).astype(np.float32)
    for audio in (noise, padded(noise, SR // 2, SR // 3)):
        assert detector.segments(audio) == []
        assert np.array_equal(detector.trim(audio), audio)


PAIRS = {
    "emodb": ("wav/03a01Wa.wav", "wav/03a05Wa.wav"),
    "ravdess": ("Actor_01/03-01-05-01-01-01-01.flac", "Actor_01/03-01-05-01-02-01-01.flac"),
    "emovo": ("f1/rab-f1-b1.flac", "f1/rab-f1-b2.flac"),
}


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
@pytest.mark.parametrize("corpus", list(PAIRS))
def test_pause_between_utterances(corpus, detector):
    """Two trimmed utterances of one speaker, 1 s of silence apart, are two segments, one per utterance; 0.1 s or
    0.2 s apart (less than MIN_GAP_SECONDS) they are one."""
    root = CORPUS_GLOBS[corpus][0]
    first, second = (detector.trim(read(require(root / name))) for name in PAIRS[corpus])
    for part in (first, second):
        assert len(detector.segments(part)) == 1  # each alone is one stretch of speech

    gap = SR
    joined = np.concatenate([first, np.zeros(gap, np.float32), second])
    segments = detector.segments(joined)
    assert len(segments) == 2
    middle = first.size + gap // 2
    assert segments[0].end < middle < segments[1].start
    assert segments[0].start < first.size and segments[1].end > first.size + gap
    assert segments[1].seconds()[0] == segments[1].start / SR

    for gap in (int(0.1 * SR), int(0.2 * SR)):
        assert gap < speech.MIN_GAP_SECONDS * SR
        joined = np.concatenate([first, np.zeros(gap, np.float32), second])
        (segment,) = detector.segments(joined)
        assert segment.start < first.size // 2 and segment.end > first.size + gap + second.size // 2


@pytest.mark.parametrize("corpus", list(CORPUS_GLOBS))
def test_level_meter_matches_one_shot(corpus):
    audio = read(corpus_sample(corpus, 3)[1])
    levels = speech.frame_levels(audio)
    segments = ENERGY.segments(audio)
    rng = np.random.default_rng(3)
    random_sizes = rng.integers(1, 3000, size=audio.size)  # far more than needed
    for sizes in ([1], [7], [159], [161], [399], [401], [1001], [audio.size + 5], random_sizes):
        meter = speech.LevelMeter()
        position, index = 0, 0
        while position < audio.size:
            size = int(sizes[index % len(sizes)])
            meter.add(audio[position:position + size])
            position, index = position + size, index + 1
        assert meter.num_samples == audio.size
        assert np.array_equal(np.concatenate(meter.levels), levels)
        assert meter.segments() == segments


def test_level_meter_short_and_empty_input():
    audio = read(corpus_sample("emodb", 1)[0])
    short = audio[5000:5000 + int(speech.FRAME_SECONDS * SR) - 1]  # less than one frame
    meter = speech.LevelMeter()
    for i in range(0, short.size, 50):
        meter.add(short[i:i + 50])
    assert meter.levels == [] and meter.segments() == ENERGY.segments(short)
    assert speech.LevelMeter().segments() == ENERGY.segments(np.zeros(0, np.float32)) == []


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_trim_removes_ravdess_silent_lead_in_and_tail(detector):
    """RAVDESS clips open and close with about a second of near-silence. Trimming keeps the loudest sample and
    removes most of that near-silence (the samples before the first and after the last sample within 40 dB of the
    peak), and every trimmed clip is shorter than the clip."""
    quiet_total = removed_total = 0
    for path in corpus_sample("ravdess", 24):
        audio = read(path)
        start, end = span(detector.segments(audio))
        assert np.array_equal(detector.trim(audio), sounding(audio[start:end]))
        assert end - start < audio.size, path.name
        assert start <= int(np.argmax(np.abs(audio))) < end, path.name
        loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
        lead, tail = loud[0], audio.size - 1 - loud[-1]
        quiet_total += lead + tail
        removed_total += min(start, lead) + min(audio.size - end, tail)
    assert quiet_total > 24 * 0.5 * SR  # the near-silence is there: on average more than half a second a clip
    assert removed_total > 0.5 * quiet_total


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_trim_drops_digital_silence_that_margins_reach_into(detector):
    """The margins around speech may reach into padding; exact zeros are cut, so a clip that starts or ends with its
    speech trims to the same samples with or without digital silence around it (padding that keeps the frames
    aligned with the clip's)."""
    paths = sorted(require(EMODB.parent / "ravdess").glob("Actor_0[1-4]/*.flac"))[::4]
    same = sum(np.array_equal(detector.trim(read(p)), detector.trim(np.pad(read(p), ALIGNED_PAD))) for p in paths)
    assert same >= 0.95 * len(paths)
    for path in paths[:5]:
        trimmed = detector.trim(np.pad(read(path), 2 * SR))
        assert trimmed[0] != 0 and trimmed[-1] != 0


def test_silero_meter_matches_one_shot():
    """Fed in blocks of any size (across the 16 s scan blocks too), the meter gives exactly the probabilities and
    segments of the whole recording at once."""
    clips = [read(path) for path in corpus_sample("emovo", 8)]
    recording = np.concatenate([np.concatenate([clip, np.zeros(SR // 2, np.float32)]) for clip in clips])
    assert recording.size > speech.SILERO_BLOCK  # more than one scan block
    whole = speech.DEFAULT.meter()
    whole.add(recording)
    segments = whole.segments()
    assert len(segments) >= len(clips) // 2
    for size in (1000, 511, 513, speech.SILERO_BLOCK + 7):
        meter = speech.DEFAULT.meter()
        for start in range(0, recording.size, size):
            meter.add(recording[start:start + size])
        assert meter.segments() == segments
        assert np.array_equal(np.concatenate(meter.probabilities), np.concatenate(whole.probabilities))


@pytest.mark.parametrize("corpus", list(CORPUS_GLOBS))
def test_speech_in_noise_is_found_and_noise_alone_is_not(corpus):
    """Real clips with white noise at 5 dB SNR are speech to Silero (the energy detector refuses loud speech whose
    frames stand less than 12 dB above the noise); the same noise alone is not."""
    rng = np.random.default_rng(5)
    for path in corpus_sample(corpus, 8):
        audio = read(path)
        noise = rng.standard_normal(audio.size).astype(np.float32) * np.sqrt(np.mean(audio ** 2) / 10 ** 0.5)
        assert speech.DEFAULT.segments(audio + noise), path.name
        assert speech.DEFAULT.segments(noise) == [], path.name


def test_detector_is_recorded_and_read_back():
    assert speech.Detector.from_dict(speech.DEFAULT.to_dict()) == speech.DEFAULT
    assert speech.DEFAULT.to_dict()["version"] == speech.SILERO_VERSION
    assert speech.Detector.from_dict(None) == ENERGY  # models from before the detector was recorded
    with pytest.raises(ValueError, match="unknown speech detector 'webrtc'"):
        speech.Detector("webrtc")


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_remembered_answers_follow_the_audio_not_the_array(detector):
    """The detector keeps its last answers by the samples' content: the same clip again gets the same segments, and
    an array changed in place (a reused buffer) is scanned again, never answered from before."""
    audio = read(EMODB / "wav" / "03a01Wa.wav").copy()
    first = detector.segments(audio)
    assert first and detector.segments(audio.copy()) == first
    audio[:] = 0.0
    assert detector.segments(audio) == []
