"""Long recordings as a timeline of speech segments: finding them, classifying them, smoothing, a summary, and the
writers (CSV, JSON lines) and plot.

A recording is read twice, block by block, so memory does not grow with its length: the first pass runs the model's
speech detector (speech_ser.py), the second cuts out each speech segment and classifies it whole. Segments longer than
`max_segment_seconds` are split into equal pieces no longer than that.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

import speech_ser as speech
from ser.audio import AudioError, iter_audio_blocks

BLOCK_SECONDS = 10.0  # how much of the file is decoded at a time


def pieces(segments: list[speech.Segment], longest: int) -> list[speech.Segment]:
    """Segments split into equal parts of at most `longest` samples."""
    out = []
    for segment in segments:
        count = max(1, math.ceil((segment.end - segment.start) / longest))
        bounds = np.linspace(segment.start, segment.end, count + 1).round().astype(int)
        out += [speech.Segment(int(a), int(b)) for a, b in zip(bounds, bounds[1:])]
    return out


def find_segments(path: Path, detector: speech.Detector, sampling_rate: int, also=None) -> list[speech.Segment]:
    """The speech segments of a whole file (first pass); `also(block)` sees each block."""
    meter = detector.meter(sampling_rate)
    for _, block in iter_audio_blocks(path, BLOCK_SECONDS, sampling_rate):
        meter.add(block)
        if also is not None:
            also(block)
    return meter.segments()


def cut(path: Path, segments: list[speech.Segment], sampling_rate: int) -> Iterator[tuple[speech.Segment, np.ndarray]]:
    """(segment, its samples) in file order (second pass), holding at most one block and one segment."""
    queue = iter(segments)
    current = next(queue, None)
    held, held_start = np.zeros(0, dtype=np.float32), 0  # the samples from held_start on that may still be needed
    for _, block in iter_audio_blocks(path, BLOCK_SECONDS, sampling_rate):
        if current is None:
            return
        held = np.concatenate([held, block])
        while current is not None and current.end <= held_start + held.size:
            yield current, held[current.start - held_start: current.end - held_start].copy()
            current = next(queue, None)
        drop = held.size if current is None else min(held.size, current.start - held_start)
        held, held_start = held[drop:], held_start + drop


def smooth(rows: list[dict], seconds: float) -> list[dict]:
    """Each row's scores averaged with those of the rows whose middle lies within `seconds` / 2 of its own, weighted
    by duration; labels follow the smoothed scores. 0 leaves the rows as they are."""
    if seconds <= 0 or not rows:
        return rows
    middles = np.array([(row["start"] + row["end"]) / 2 for row in rows])
    weights = np.array([row["end"] - row["start"] for row in rows])
    labels = list(rows[0]["scores"])
    scores = np.array([[row["scores"][label] for label in labels] for row in rows])
    out = []
    for i, row in enumerate(rows):
        near = np.abs(middles - middles[i]) <= seconds / 2
        mean = (scores[near] * weights[near, None]).sum(axis=0) / weights[near].sum()
        smoothed = dict(zip(labels, mean.tolist()))
        out.append({**row, "scores": smoothed, "label": max(smoothed, key=smoothed.get)})
    return out


def summary(rows: list[dict]) -> dict:
    """Speech time in seconds and, per emotion that is the top label somewhere, its share of the speech time
    (largest first)."""
    total = sum(row["end"] - row["start"] for row in rows)
    time: dict[str, float] = {}
    for row in rows:
        time[row["label"]] = time.get(row["label"], 0.0) + row["end"] - row["start"]
    shares = {label: seconds / total for label, seconds in sorted(time.items(), key=lambda item: -item[1])}
    return {"speech_seconds": total, "share": shares}


def clock(seconds: float) -> str:
    """m:ss (h:mm:ss from an hour on), as a timeline's time axis reads."""
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    return path


# --- output ---------------------------------------------------------------------------------------------------------


def write(rows: Iterable[dict], path: str | Path) -> Path | None:
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


def _score_labels(rows: list[dict]) -> list[str]:
    labels: dict[str, None] = {}
    for row in rows:
        for label in row.get("scores") or {}:
            labels.setdefault(label)
    return list(labels)


def _write_csv(rows: list[dict], handle) -> None:
    labels = _score_labels(rows)
    extra = [key for key in ("file", "error") if any(key in row for row in rows)]
    columns = [c for c in ("file",) if c in extra] + ["start", "end", "label", "uncertain", *labels]
    columns += [c for c in ("error",) if c in extra]
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        scores = row.get("scores") or {}
        flat = {**row, **{label: scores.get(label, "") for label in labels}}
        flat = {key: ("" if value is None else value) for key, value in flat.items()}
        writer.writerow(flat)


def plot(rows: list[dict], labels: list[str], path=None, title: str | None = None, width_inches: float = 12.0):
    """Stacked probabilities of each speech segment above a strip of its top label, gaps without speech left blank,
    and a bar of the share of speech time per emotion. The legend lists only the emotions that are a top label
    somewhere. Uses the Agg canvas directly (no pyplot), so it works headless and leaks no global figures."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = [row for row in rows if row.get("scores")]
    if not rows:
        raise ValueError("no speech segments to plot")
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    fig = Figure(figsize=(width_inches, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    probs_ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    for row in rows:
        bottom = 0.0
        for label in labels:
            value = row["scores"].get(label, 0.0)
            probs_ax.fill_between([row["start"], row["end"]], bottom, bottom + value, color=colors[label], linewidth=0)
            bottom += value
        strip.broken_barh([(row["start"], row["end"] - row["start"])], (0, 1), facecolors=colors[row["label"]])
    probs_ax.set(ylim=(0, 1), ylabel="probability", xlim=(0, max(row["end"] for row in rows)))
    strip.set(yticks=[], xlabel="time (m:ss)", ylabel="top")
    strip.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds)))
    shares = summary(rows)["share"]
    handles = [Patch(color=colors[label], label=f"{label} {share:.0%}") for label, share in shares.items()]
    probs_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                    title="share of speech")
    if title:
        fig.suptitle(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
