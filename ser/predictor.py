"""EmotionPredictor: the toolkit's one inference object (CLI, Gradio app, benchmarks).

It loads a saved model (stock `*ForSequenceClassification` or our custom head) through `from_pretrained`, checks its
input with messages a user can act on, and runs the model directly on the feature extractor's tensors. Long
recordings go through `timeline`, which streams the file so memory does not depend on its length.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import nn

import modeling_ser
from ser.audio import SAMPLING_RATE, AudioError, audio_duration, iter_audio_blocks, load_audio, to_mono
from ser.runtime import RUNTIMES, fast_inference_model

MAX_CHANNELS = 8  # a 2-D array with more "channels" than this is almost surely (channels, samples)


class EmotionPredictor:
    """Emotion probabilities for clips, files and long recordings."""

    sampling_rate = SAMPLING_RATE
    min_seconds = 0.25
    max_seconds = 60.0
    silence_db = -45.0  # a clip whose peak is below this (dBFS) holds no speech
    batch_size = 8  # clips or timeline windows per forward pass
    max_padding = 0.1  # a padded batch may hold at most this fraction of padding (padding is wasted compute)

    def __init__(self, model: nn.Module, feature_extractor, runtime: str = "fp32", owns_model: bool = False):
        """`owns_model`: the model may be rewritten in place (no copy: the int8 peak memory drops by the model's
        size); else the caller's model is left as it was."""
        rate = getattr(feature_extractor, "sampling_rate", None)
        if rate != self.sampling_rate:
            raise ValueError(f"the feature extractor expects {rate} Hz audio; "
                             f"EmotionPredictor feeds {self.sampling_rate} Hz")
        config = model.config
        self.labels: list[str] = [_label(config.id2label, i) for i in range(config.num_labels)]
        self.runtime = runtime
        self.feature_extractor = feature_extractor
        self.model = fast_inference_model(model, runtime, inplace=owns_model)
        self.pads_exactly = _pads_exactly(config, feature_extractor)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, runtime: str = "fp32") -> EmotionPredictor:
        """A Hub id or a local folder, through the same `from_pretrained` path for both."""
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime={runtime!r} is not one of {RUNTIMES}")
        name = str(name_or_path)
        _check_local_model(name)
        modeling_ser.register_auto_classes()
        try:
            model = AutoModelForAudioClassification.from_pretrained(name, dtype=torch.float32)
            feature_extractor = AutoFeatureExtractor.from_pretrained(name)
        except (OSError, ValueError) as err:
            if Path(name).is_dir():
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(
                f"model {name!r} not found: there is no such local folder, and it could not be loaded from the "
                f"Hugging Face Hub ({reason})"
            ) from err
        return cls(model, feature_extractor, runtime=runtime, owns_model=True)  # nobody else holds this model

    # --- clips ------------------------------------------------------------------------------------------------------

    def classify_batch(self, arrays: list[np.ndarray]) -> list[dict[str, float]]:
        """Probabilities of every label for each 16 kHz mono clip, in input order."""
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
            raise ValueError("classify_batch expects a list of 1-D numpy arrays (use classify_array for one clip)")
        clips = []
        for i, array in enumerate(arrays):
            if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind != "f":
                described = f"{type(array).__name__} {getattr(array, 'shape', '')} {getattr(array, 'dtype', '')}"
                raise ValueError(f"clip {i}: expected a 1-D float numpy array of 16 kHz mono samples, got {described}"
                                 " (classify_array converts other rates and channel layouts)")
            clip = np.ascontiguousarray(array, dtype=np.float32)
            self._check_clip(clip, f"clip {i}")
            clips.append(clip)
        return self._as_dicts(self._probabilities(clips))

    def classify_array(self, array: np.ndarray, sampling_rate: int) -> dict[str, float]:
        """One clip at any rate, mono (n,) or (n, channels); integer PCM is scaled to [-1, 1]."""
        return self._as_dicts(self._probabilities([self.prepare_array(array, sampling_rate)]))[0]

    def classify_file(self, path: str | Path) -> dict[str, float]:
        return self._as_dicts(self._probabilities([self.load_file(path)]))[0]

    def prepare_array(self, array: np.ndarray, sampling_rate: int, name: str = "audio") -> np.ndarray:
        """Validated 16 kHz mono float32 from what a caller (e.g. a Gradio microphone) hands over."""
        rate = _check_rate(sampling_rate)
        mono = _to_float_mono(array, name)
        self._check_duration(mono.size / rate, name)
        if not np.isfinite(mono).all():
            raise ValueError(f"{name}: audio contains NaN or infinite samples")
        if rate != self.sampling_rate:
            mono = soxr.resample(mono, rate, self.sampling_rate).astype(np.float32, copy=False)
        self._check_clip(mono, name)
        return mono

    def load_file(self, path: str | Path) -> np.ndarray:
        """Decoded, validated 16 kHz mono. The length is checked from the header first, so an hour-long file is
        refused without being decoded."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"expected a file path, got {type(path).__name__}")
        path = Path(path)
        self._check_duration(audio_duration(path), str(path))
        audio = load_audio(path, self.sampling_rate)
        self._check_clip(audio, str(path))
        return audio

    # --- long recordings --------------------------------------------------------------------------------------------

    def timeline(self, path: str | Path, window_seconds: float = 2.0, hop_seconds: float = 1.0,
                 skip_silence: bool = True, silence_db: float = -45.0) -> Iterator[dict]:
        """Rows {"start", "end", "label", "scores", "silent"} for windows every `hop_seconds`, streamed.

        Arguments and the file's existence are checked now; decoding errors surface while iterating.
        """
        if not (self.min_seconds <= window_seconds <= self.max_seconds):
            raise ValueError(f"window_seconds={window_seconds} must be between {self.min_seconds} and "
                             f"{self.max_seconds} s")
        if not (0 < hop_seconds <= window_seconds):
            raise ValueError(f"hop_seconds={hop_seconds} must be positive and at most window_seconds "
                             f"({window_seconds}); a longer hop would skip audio")
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: no such audio file")
        window = int(round(window_seconds * self.sampling_rate))
        hop = max(1, int(round(hop_seconds * self.sampling_rate)))
        threshold = _db_to_amplitude(silence_db) if skip_silence else None
        return self._timeline_rows(path, window, hop, threshold)

    def _timeline_rows(self, path: Path, window: int, hop: int, threshold: float | None) -> Iterator[dict]:
        """Classifies windows `batch_size` at a time; silent windows wait in line so rows stay in time order."""
        pending: list[tuple[dict, np.ndarray | None]] = []
        waiting = 0
        emitted = False
        min_samples = int(math.ceil(self.min_seconds * self.sampling_rate))
        for start, audio in _sliding_windows(path, window, hop, min_samples, self.sampling_rate):
            row = {"start": start / self.sampling_rate, "end": (start + audio.size) / self.sampling_rate}
            if threshold is not None and _peak(audio) < threshold:
                row.update(label=None, scores=None, silent=True)
                pending.append((row, None))
            else:
                pending.append((row, audio))
                waiting += 1
            if waiting >= self.batch_size:
                yield from self._finish_rows(pending)
                pending, waiting, emitted = [], 0, True
        if pending:
            yield from self._finish_rows(pending)
            emitted = True
        if not emitted:
            raise ValueError(f"{path}: audio is too short: under {self.min_seconds} s (the minimum the model accepts)")

    def _finish_rows(self, pending: list[tuple[dict, np.ndarray | None]]) -> Iterator[dict]:
        clips = [audio for _, audio in pending if audio is not None]
        scores = iter(self._as_dicts(self._probabilities(clips))) if clips else iter(())
        for row, audio in pending:
            if audio is not None:
                probabilities = next(scores)
                row.update(label=max(probabilities, key=probabilities.get), scores=probabilities, silent=False)
            yield row

    @staticmethod
    def write_timeline(rows: Iterable[dict], path: str | Path) -> Path | None:
        """Writes rows to .csv (one column per label) or .jsonl (rows as they are); "-" writes CSV to stdout."""
        rows = list(rows)
        if str(path) == "-":
            _write_csv(rows, sys.stdout)
            return None
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            raise ValueError(f"{path}: timeline output must end in .csv or .jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            if suffix == ".csv":
                _write_csv(rows, handle)
            else:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")
        return path

    @staticmethod
    def plot_timeline(rows: Iterable[dict], labels: list[str], path: str | Path | None = None,
                      title: str | None = None):
        """Stacked probabilities over time above a strip of the top label; silent windows grey. Uses the Agg canvas
        directly (no pyplot), so it works headless and leaks no global figures."""
        return _plot_timeline(list(rows), list(labels), path, title)

    # --- internals --------------------------------------------------------------------------------------------------

    def _check_duration(self, seconds: float, name: str) -> None:
        if seconds > self.max_seconds:
            raise ValueError(f"{name}: audio is too long ({seconds:.1f} s > {self.max_seconds:g} s) to classify as "
                             "one clip; use the timeline (EmotionPredictor.timeline, or predict_ser.py --timeline)")

    def _check_clip(self, audio: np.ndarray, name: str) -> None:
        """The checks every clip gets before the model sees it."""
        if audio.size == 0:
            raise ValueError(f"{name}: audio is empty (0 samples)")
        if not np.isfinite(audio).all():
            raise ValueError(f"{name}: audio contains NaN or infinite samples")
        seconds = audio.size / self.sampling_rate
        if seconds < self.min_seconds:
            raise ValueError(f"{name}: audio is too short ({seconds:.3f} s < {self.min_seconds} s)")
        self._check_duration(seconds, name)
        peak = _peak(audio)
        if peak < _db_to_amplitude(self.silence_db):
            level = f"{20 * math.log10(peak):.1f} dBFS" if peak > 0 else "digital silence"
            raise ValueError(f"{name}: no speech: the audio is silent (peak {level}, below {self.silence_db:g} dBFS)")

    def _probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        """Softmax rows (len(clips), num_labels) in input order."""
        probs = np.empty((len(clips), len(self.labels)), dtype=np.float32)
        for batch in self._batches([clip.size for clip in clips]):
            inputs = self.feature_extractor([clips[i] for i in batch], sampling_rate=self.sampling_rate,
                                            padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**inputs).logits
            probs[batch] = torch.softmax(logits.float(), dim=-1).numpy()
        return probs

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped for one forward each, by length. Padding is only used where the model ignores it exactly
        (an attention mask and no group norm over time); otherwise only clips of equal length share a batch."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        tolerance = self.max_padding if self.pads_exactly else 0.0
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if (current and len(current) < self.batch_size
                    and lengths[i] <= lengths[current[0]] * (1 + tolerance)):
                current.append(i)
            else:
                batches.append([i])
        return batches

    def _as_dicts(self, probs: np.ndarray) -> list[dict[str, float]]:
        return [dict(zip(self.labels, row.tolist())) for row in probs]


# --- input checks ---------------------------------------------------------------------------------------------------


def _label(id2label: dict, index: int) -> str:
    return str(id2label[index] if index in id2label else id2label[str(index)])


def _check_local_model(name: str) -> None:
    """Turns the usual local mistakes into one clear message before transformers tries the Hub."""
    path = Path(name).expanduser()
    if path.is_file():
        raise FileNotFoundError(f"{name} is a file; a model is a folder with config.json and weights")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{name} is a folder but holds no config.json: not a saved model")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local and not path.exists():
        raise FileNotFoundError(f"model folder {name} does not exist")


def _check_rate(sampling_rate) -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
    return int(sampling_rate)


def _to_float_mono(array, name: str) -> np.ndarray:
    """(n,) or (n, channels), float or integer PCM -> mono float32 (channels averaged, as in training)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of samples, got {type(array).__name__}")
    if array.ndim == 2 and array.shape[1] > MAX_CHANNELS:
        raise ValueError(f"{name}: expected shape (samples, channels), got {array.shape}; "
                         "transpose a (channels, samples) array first")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape (samples,) or (samples, channels), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: audio is empty (0 samples)")
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


def _peak(audio: np.ndarray) -> float:
    return float(np.max(np.abs(audio))) if audio.size else 0.0


def _db_to_amplitude(db: float) -> float:
    """Silence is decided by comparing amplitudes, so a silent clip never meets a log of (or division by) zero."""
    return 10.0 ** (db / 20.0)


# --- streaming windows ----------------------------------------------------------------------------------------------


def _sliding_windows(path: Path, window: int, hop: int, min_samples: int,
                     sampling_rate: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, window copy) every `hop` samples, reading the file block by block into one fixed buffer.

    After the full windows, the remaining tail (samples no window has covered yet, starting at the next hop) is
    yielded as a shorter final window when it is at least `min_samples` long.
    """
    buffer = np.empty(window, dtype=np.float32)
    filled = 0  # samples in buffer
    buffer_start = 0  # position of buffer[0] in the recording
    covered = 0  # end of the last window yielded
    for _, block in iter_audio_blocks(path, hop / sampling_rate, sampling_rate):
        while block.size:
            take = min(window - filled, block.size)
            buffer[filled:filled + take] = block[:take]
            filled += take
            block = block[take:]
            if filled == window:
                yield buffer_start, buffer.copy()
                covered = buffer_start + window
                buffer[:window - hop] = buffer[hop:]
                filled -= hop
                buffer_start += hop
    if buffer_start + filled > covered and filled >= min_samples:
        yield buffer_start, buffer[:filled].copy()


# --- output ---------------------------------------------------------------------------------------------------------


def _score_labels(rows: list[dict]) -> list[str]:
    labels: dict[str, None] = {}
    for row in rows:
        for label in row.get("scores") or {}:
            labels.setdefault(label)
    return list(labels)


def _write_csv(rows: list[dict], handle) -> None:
    labels = _score_labels(rows)
    extra = [key for key in ("file", "error") if any(key in row for row in rows)]
    columns = [c for c in ("file",) if c in extra] + ["start", "end", "label", "silent", *labels]
    columns += [c for c in ("error",) if c in extra]
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        scores = row.get("scores") or {}
        flat = {**row, **{label: scores.get(label, "") for label in labels}}
        flat = {key: ("" if value is None else value) for key, value in flat.items()}
        writer.writerow(flat)


def _plot_timeline(rows: list[dict], labels: list[str], path, title):
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [row for row in rows if "start" in row and row.get("start") is not None]
    if not rows:
        raise ValueError("no timeline rows to plot")
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    grey = (0.75, 0.75, 0.75, 1.0)

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    probs_ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    # Each window stands for the time until the next one starts (the last: until its end), as steps.
    edges = np.array([row["start"] for row in rows] + [rows[-1]["end"]])
    probs = np.array([[(row.get("scores") or {}).get(label, 0.0) for row in rows] for label in labels])
    probs = np.concatenate([probs, probs[:, -1:]], axis=1)  # the step after the last edge
    bottom = np.zeros(edges.size)
    for label, values in zip(labels, probs):
        probs_ax.fill_between(edges, bottom, bottom + values, step="post", color=colors[label], linewidth=0)
        bottom = bottom + values
    spans = _label_spans(rows)
    for label, start, end in spans:
        if label is None:
            probs_ax.axvspan(start, end, color=grey, linewidth=0)
    for label in [*labels, None]:
        bars = [(start, end - start) for span_label, start, end in spans if span_label == label]
        if bars:
            strip.broken_barh(bars, (0, 1), facecolors=colors.get(label, grey))
    probs_ax.set(ylim=(0, 1), ylabel="probability", xlim=(rows[0]["start"], max(row["end"] for row in rows)))
    strip.set(yticks=[], xlabel="time (s)", ylabel="top")
    handles = [Patch(color=colors[label], label=label) for label in labels] + [Patch(color=grey, label="silent")]
    probs_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def _label_spans(rows: list[dict]) -> list[tuple[str | None, float, float]]:
    """Runs of equal top label; each window stands for the time until the next window starts."""
    spans: list[tuple[str | None, float, float]] = []
    for row, following in itertools.zip_longest(rows, rows[1:]):
        label = None if row.get("silent") else row.get("label")
        end = following["start"] if following else row["end"]
        if spans and spans[-1][0] == label and math.isclose(spans[-1][2], row["start"]):
            spans[-1] = (label, spans[-1][1], end)
        else:
            spans.append((label, row["start"], end))
    return spans


def _pads_exactly(config, feature_extractor) -> bool:
    """Padding changes nothing only with an attention mask and no normalisation over time in the conv front end."""
    return bool(getattr(feature_extractor, "return_attention_mask", False)) and \
        getattr(config, "feat_extract_norm", "layer") != "group"
