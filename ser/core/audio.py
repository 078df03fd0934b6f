"""Audio loading: every model in the toolkit wants mono float32 at one rate.

Decoding goes through soundfile (libsndfile) so that wav/flac/ogg/mp3 need no
external tool; ffmpeg is only a fallback for containers libsndfile cannot
open (m4a, some opus files), and only when the binary is on PATH.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# The refusals and the level are the model's (feature_extraction_ser.py, saved beside every model), as is the rate
from feature_extraction_ser import LEVEL_DBFS, AudioError, Reason, normalise_level  # noqa: F401 (the project's names)
from speech_ser import SAMPLING_RATE

# Input frames decoded per read while streaming; about 1.5 s at 44.1 kHz, so
# memory does not depend on the file length or on the requested block size.
STREAM_READ_FRAMES = 65536

_SOUNDFILE_ERRORS = (sf.SoundFileError, RuntimeError)


MAX_CHANNELS = 8  # a 2-D array with more "channels" than this is almost surely (channels, samples)

# Containers soundfile (libsndfile) reads, plus those only the ffmpeg fallback decodes.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".opus", ".aac", ".aif", ".aiff",
                              ".au", ".webm"})


def find_audio_files(root: Path) -> list[Path]:
    """Audio files under root, recursively and sorted, skipping hidden files and macOS zip metadata."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in relative):
            continue
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            found.append(path)
    return sorted(found)


def load_audio(path: str | Path, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Decode a whole file to mono float32 at `sampling_rate`.

    Channels are averaged because emotion models are trained on mono speech.
    Isolated non-finite samples are zeroed so one bad sample cannot turn every
    downstream feature into NaN; a file with no finite sample is refused.
    """
    path = Path(path)
    _check_exists(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except _SOUNDFILE_ERRORS as err:
        return _finish(path, _decode_with_ffmpeg(path, sampling_rate, err))
    return _to_clip(path, data, rate, sampling_rate)


def load_audio_bytes(encoded: bytes, name: str, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """An audio file held in memory (a dataset's embedded audio), decoded as load_audio decodes a file; `name` is
    what errors call it."""
    try:
        data, rate = sf.read(io.BytesIO(encoded), dtype="float32", always_2d=True)
    except _SOUNDFILE_ERRORS as err:
        raise AudioError(f"{name}: not a readable audio file: {err}") from err
    return _to_clip(name, data, rate, sampling_rate)


def _to_clip(name, data: np.ndarray, rate: int, sampling_rate: int) -> np.ndarray:
    mono = to_mono(data)
    if mono.size == 0:
        raise AudioError(f"{name}: audio file is empty (0 samples)", Reason.EMPTY)
    mono = _sanitize(name, mono)
    if rate != sampling_rate:
        mono = soxr.resample(mono, rate, sampling_rate).astype(np.float32, copy=False)
    return _finish(name, mono)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the header, without decoding the samples.

    Used to plan chunking and to report corpus sizes cheaply.
    """
    path = Path(path)
    _check_exists(path)
    try:
        return float(sf.info(str(path)).duration)
    except _SOUNDFILE_ERRORS as err:
        return _duration_with_ffprobe(path, err)


def iter_audio_blocks(
    path: str | Path, block_seconds: float, sampling_rate: int = SAMPLING_RATE
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start_seconds, block) pairs of mono float32 at `sampling_rate`.

    Hour-long recordings must not be decoded at once, so the file is read in
    fixed-size pieces and resampled with a streaming resampler whose state
    carries across pieces: the concatenated blocks equal a one-shot resample.
    Every block has exactly round(block_seconds * sampling_rate) samples
    except the last, which holds the remainder.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    path = Path(path)
    _check_exists(path)
    block_len = max(1, int(round(block_seconds * sampling_rate)))
    pending: list[np.ndarray] = []
    pending_len = 0
    emitted = 0
    for chunk in _iter_resampled_chunks(path, sampling_rate):
        pending.append(chunk)
        pending_len += chunk.size
        if pending_len < block_len:
            continue
        joined = np.concatenate(pending)
        cut = 0
        while joined.size - cut >= block_len:
            yield emitted / sampling_rate, joined[cut : cut + block_len]
            emitted += block_len
            cut += block_len
        pending = [joined[cut:]]
        pending_len = joined.size - cut
    if pending_len > 0:
        yield emitted / sampling_rate, np.concatenate(pending)
        emitted += pending_len
    if emitted == 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)", Reason.EMPTY)


def _iter_resampled_chunks(path: Path, sampling_rate: int) -> Iterator[np.ndarray]:
    """Mono chunks at the target rate, from soundfile or else from ffmpeg."""
    try:
        handle = sf.SoundFile(str(path))
    except _SOUNDFILE_ERRORS as err:
        yield from _stream_with_ffmpeg(path, sampling_rate, err)
        return
    with handle:
        stream = None
        if handle.samplerate != sampling_rate:
            stream = soxr.ResampleStream(handle.samplerate, sampling_rate, 1, dtype="float32")
        while True:
            try:
                data = handle.read(STREAM_READ_FRAMES, dtype="float32", always_2d=True)
            except _SOUNDFILE_ERRORS as err:
                raise AudioError(f"{path}: decoding failed mid-file: {err}") from err
            if data.shape[0] == 0:
                break
            mono = np.nan_to_num(to_mono(data), nan=0.0, posinf=0.0, neginf=0.0)
            yield mono if stream is None else stream.resample_chunk(mono)
        if stream is not None:
            yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _stream_with_ffmpeg(path: Path, sampling_rate: int, cause: Exception) -> Iterator[np.ndarray]:
    """Stream raw f32le from an ffmpeg pipe; ffmpeg already resamples."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise _unreadable(path, cause)
    process = subprocess.Popen(
        _ffmpeg_command(ffmpeg, path, sampling_rate),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        while True:
            raw = process.stdout.read(STREAM_READ_FRAMES * 4)
            if not raw:
                break
            raw = raw[: len(raw) - len(raw) % 4]
            chunk = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            yield np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.wait() != 0:
            raise AudioError(f"{path}: ffmpeg could not decode the file: {stderr.strip()}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _decode_with_ffmpeg(path: Path, sampling_rate: int, cause: Exception) -> np.ndarray:
    """Whole-file decode through ffmpeg for formats libsndfile lacks."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise _unreadable(path, cause)
    result = subprocess.run(
        _ffmpeg_command(ffmpeg, path, sampling_rate), capture_output=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise AudioError(f"{path}: not readable as audio by soundfile ({cause}) nor ffmpeg ({message})")
    raw = result.stdout[: len(result.stdout) - len(result.stdout) % 4]
    mono = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if mono.size == 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)", Reason.EMPTY)
    return _sanitize(path, mono)


def _ffmpeg_command(ffmpeg: str, path: Path, sampling_rate: int) -> list[str]:
    return [
        ffmpeg, "-nostdin", "-v", "error", "-i", str(path),
        "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(sampling_rate), "-",
    ]


def _duration_with_ffprobe(path: Path, cause: Exception) -> float:
    """Header duration for containers libsndfile cannot open."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise _unreadable(path, cause)
    result = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        check=False,
    )
    try:
        return float(result.stdout.decode().strip())
    except ValueError:
        raise _unreadable(path, cause) from None


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")


def _unreadable(path: Path, cause: Exception) -> AudioError:
    hint = "" if shutil.which("ffmpeg") else " (ffmpeg is not installed, so no fallback decoder)"
    return AudioError(f"{path}: not a readable audio file: {cause}{hint}")


def to_float_mono(array, name: str) -> np.ndarray:
    """(n,) or (n, channels), float or integer PCM -> mono float32 (channels averaged, as in training). Integer PCM is
    divided by 2**(bits - 1), so its most negative value is -1: the one scale for every caller (predictor, demo)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of samples, got {type(array).__name__}")
    if array.ndim == 2 and array.shape[1] > MAX_CHANNELS:
        raise ValueError(f"{name}: expected shape (samples, channels), got {array.shape}; "
                         "transpose a (channels, samples) array first")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape (samples,) or (samples, channels), got {array.shape}")
    if array.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)", Reason.EMPTY)
    kind = array.dtype.kind
    if kind == "f":
        samples = array.astype(np.float32, copy=False)
    elif kind == "i":
        samples = array.astype(np.float32) / np.float32(-np.iinfo(array.dtype).min)
    elif kind == "u":
        middle = np.float32(2 ** (8 * array.dtype.itemsize - 1))
        samples = (array.astype(np.float32) - middle) / middle
    else:
        raise ValueError(f"{name}: expected float or integer PCM samples, got dtype {array.dtype}")
    if samples.ndim == 2:
        samples = to_mono(samples)
    return np.ascontiguousarray(samples, dtype=np.float32)


def to_mono(data: np.ndarray) -> np.ndarray:
    """(samples, channels) -> (samples,) float32, channels averaged."""
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0], dtype=np.float32)
    return data.mean(axis=1, dtype=np.float32)


def _sanitize(path: Path, mono: np.ndarray) -> np.ndarray:
    finite = np.isfinite(mono)
    if finite.all():
        return mono
    if not finite.any():
        raise AudioError(f"{path}: audio contains no finite samples (all NaN/inf)", Reason.NOT_FINITE)
    return np.where(finite, mono, np.float32(0.0)).astype(np.float32)


def _finish(path: Path, mono: np.ndarray) -> np.ndarray:
    if mono.size == 0:
        raise AudioError(f"{path}: audio is empty after resampling", Reason.EMPTY)
    return np.ascontiguousarray(mono, dtype=np.float32)
