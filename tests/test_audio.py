"""Audio loading on generated files: mono/resample, formats, bad input, streaming."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser.core.audio import AudioError, audio_duration, iter_audio_blocks, load_audio


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_stereo_44k_to_mono_16k(tmp_path):
    left = tone(1.5, 44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 24000) <= 1
    # Averaging a full-scale channel with silence halves the level.
    assert rms(audio[1000:-1000]) == pytest.approx(rms(left) / 2, rel=0.02)


def test_target_rate_is_honoured(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(2.0, 16000), 16000)
    assert load_audio(path, sampling_rate=8000).size == 16000


def test_flac_same_rate_is_lossless(tmp_path):
    signal = tone(1.0, 16000)
    path = tmp_path / "a.flac"
    sf.write(path, signal, 16000)
    np.testing.assert_allclose(load_audio(path), signal, atol=1 / 32768)


@pytest.mark.parametrize("ext, fmt", [("flac", None), ("ogg", None), ("mp3", None), ("opus", ("OGG", "OPUS"))])
def test_compressed_formats_resampled(tmp_path, ext, fmt):
    path = tmp_path / f"a.{ext}"
    kwargs = {"format": fmt[0], "subtype": fmt[1]} if fmt else {}
    sf.write(path, tone(1.0, 48000), 48000, **kwargs)
    audio = load_audio(path)
    assert abs(audio.size - 16000) <= 1200  # lossy codecs pad a little
    assert rms(audio) == pytest.approx(rms(tone(1.0, 16000)), rel=0.1)
    assert audio_duration(path) == pytest.approx(1.0, abs=0.08)


def test_corrupt_file_raises_naming_it(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioError, match="broken.wav"):
        load_audio(path)
    with pytest.raises(AudioError, match="broken.wav"):
        audio_duration(path)
    with pytest.raises(AudioError, match="broken.wav"):
        list(iter_audio_blocks(path, 1.0))


def test_text_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioError):
        load_audio(text)
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio(tmp_path / "absent.wav")
    assert issubclass(AudioError, ValueError)


def test_empty_files(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    with pytest.raises(AudioError, match="empty"):
        list(iter_audio_blocks(empty, 1.0))
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="zero.wav"):
        load_audio(zero_bytes)


def test_nan_audio(tmp_path):
    all_nan = tmp_path / "nan.wav"
    sf.write(all_nan, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav"):
        load_audio(all_nan)
    some_nan = tmp_path / "some_nan.wav"
    signal = tone(0.1, 16000)
    signal[10] = np.nan
    sf.write(some_nan, signal, 16000, subtype="FLOAT")
    audio = load_audio(some_nan)
    assert np.isfinite(audio).all() and audio[10] == 0.0


def test_duration_is_cheap_and_right(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(2.5, 44100), 44100)
    assert audio_duration(path) == pytest.approx(2.5)


def test_iter_audio_blocks_60s_stream(tmp_path):
    rate = 44100
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(60 * rate)).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([signal, signal], axis=1), rate)
    reference = soxr.resample(signal, rate, 16000)

    blocks = list(iter_audio_blocks(path, block_seconds=7.0))
    starts = [start for start, _ in blocks]
    lengths = [block.size for _, block in blocks]
    assert len(blocks) == 9
    assert all(length == 7 * 16000 for length in lengths[:-1])
    assert starts == pytest.approx([sum(lengths[:i]) / 16000 for i in range(len(blocks))])
    joined = np.concatenate([block for _, block in blocks])
    assert joined.dtype == np.float32
    assert abs(joined.size - reference.size) <= 4
    assert abs(joined.size - 60 * 16000) <= 4
    n = min(joined.size, reference.size)
    np.testing.assert_allclose(joined[:n], reference[:n], atol=1e-3)


def test_iter_audio_blocks_same_rate_matches_load(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, tone(3.3, 16000), 16000)
    blocks = list(iter_audio_blocks(path, 1.0))
    assert [start for start, _ in blocks] == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), load_audio(path))
    with pytest.raises(ValueError, match="positive"):
        list(iter_audio_blocks(path, 0))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed: m4a fallback untestable")
def test_ffmpeg_fallback_m4a(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.0, 44100), 44100)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), str(m4a)], check=True)
    audio = load_audio(m4a)
    assert abs(audio.size - 16000) <= 2000
    streamed = np.concatenate([b for _, b in iter_audio_blocks(m4a, 0.25)])
    assert abs(streamed.size - audio.size) <= 2
