"""Long recordings as a timeline of speech segments: finding them, cutting them out, smoothing within stretches of
speech, the one summary every output shows (`summarise`), and the plot.

A recording is read twice, block by block, so memory does not grow with its length: the first pass runs the model's
speech detector (speech_ser.py), the second cuts out each speech segment and classifies it whole. Segments longer than
`max_segment_seconds` are split into equal pieces no longer than that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import speech_ser as speech
from ser.core.audio import AudioError, iter_audio_blocks
from ser.inference.rows import Prediction, Segment

BLOCK_SECONDS = 10.0  # how much of the file is decoded at a time
DOMINANT_SHARE = 0.5  # a recording's headline emotion is the top one for at least this share of its speech time
MIXED = "mixed"  # the headline when no emotion is


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


def regions(rows: list[Segment]) -> list[list[Segment]]:
    """Rows grouped into stretches of speech without a pause: the pieces of one detected segment touch, while the
    detector leaves at least a pause between its segments."""
    groups: list[list[Segment]] = []
    for row in rows:
        if groups and abs(row.start - groups[-1][-1].end) < 1e-6:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def smooth(rows: list[Segment], seconds: float, uncertain_below: float) -> list[Segment]:
    """Each row's scores averaged, weighted by duration, with those of the rows of its own stretch of speech whose
    middle lies within `seconds` / 2 of its own; never across a pause, so a short turn keeps its own emotion. Labels
    and unsure flags follow the smoothed scores. 0 leaves the rows as they are."""
    if seconds <= 0:
        return rows
    out = []
    for group in regions(rows):
        middles = np.array([(row.start + row.end) / 2 for row in group])
        weights = np.array([row.seconds for row in group])
        labels = list(group[0].scores)
        scores = np.array([[row.scores[label] for label in labels] for row in group])
        for i, row in enumerate(group):
            near = np.abs(middles - middles[i]) <= seconds / 2
            mean = (scores[near] * weights[near, None]).sum(axis=0) / weights[near].sum()
            smoothed = Prediction.of(dict(zip(labels, mean.tolist())), uncertain_below)
            out.append(replace(row, label=smoothed.label, scores=smoothed.scores, uncertain=smoothed.uncertain))
    return out


@dataclass
class Summary:
    """What a recording's timeline says, all from one list of segments (the scores the plot draws): the emotion on
    top per segment, the share of speech time each holds, the share where the model is unsure, and the headline."""

    segments: list[Segment]
    speech_seconds: float
    shares: dict[str, float]  # per emotion that is on top somewhere, largest first
    unsure_share: float  # of the speech time, where no emotion reaches the predictor's `uncertain_below`
    headline: str  # the emotion on top for at least DOMINANT_SHARE of the speech time, else MIXED
    uncertain_below: float  # what unsure means: no emotion reaches this
    smoothed_seconds: float = 0.0


def top_time(rows: Iterable[Segment]) -> dict[str, float]:
    """Seconds of speech per emotion that is the top label somewhere, most first."""
    time: dict[str, float] = {}
    for row in rows:
        time[row.label] = time.get(row.label, 0.0) + row.seconds
    return dict(sorted(time.items(), key=lambda item: -item[1]))


def summarise(rows: Iterable[Segment], uncertain_below: float, smooth_seconds: float = 0.0) -> Summary:
    """A recording's analysis from its segments' own scores (smoothed within stretches of speech, where asked)."""
    segments = smooth([row for row in rows if row.scores], smooth_seconds, uncertain_below)
    if not segments:
        raise ValueError("no speech segments to summarise")
    total = sum(row.seconds for row in segments)
    shares = {label: seconds / total for label, seconds in top_time(segments).items()}
    top = next(iter(shares))
    unsure = sum(row.seconds for row in segments if row.uncertain) / total
    return Summary(segments, total, shares, unsure, top if shares[top] >= DOMINANT_SHARE else MIXED,
                   uncertain_below, max(smooth_seconds, 0.0))


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


def plot(summary: Summary, labels: list[str], path=None, title: str | None = None, width_inches: float = 12.0):
    """Stacked probabilities of each speech segment (smoothed, where the summary was, and the axis says so) above a
    strip of its top label, gaps without speech left blank, and the share of speech time per emotion in the legend
    (only the emotions on top somewhere). Uses the Agg canvas directly (no pyplot), so it works headless and leaks
    no global figures."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = summary.segments
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    fig = Figure(figsize=(width_inches, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    probs_ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    for row in rows:
        bottom = 0.0
        for label in labels:
            value = row.scores.get(label, 0.0)
            probs_ax.fill_between([row.start, row.end], bottom, bottom + value, color=colors[label], linewidth=0)
            bottom += value
        strip.broken_barh([(row.start, row.seconds)], (0, 1), facecolors=colors[row.label])
    smoothed = f"\n(smoothed over {summary.smoothed_seconds:g} s)" if summary.smoothed_seconds else ""
    probs_ax.set(ylim=(0, 1), ylabel="probability" + smoothed, xlim=(0, max(row.end for row in rows)))
    strip.set(yticks=[], xlabel="time (m:ss)", ylabel="top")
    strip.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds)))
    handles = [Patch(color=colors[label], label=f"{label} {share:.0%}") for label, share in summary.shares.items()]
    probs_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                    title="share of speech time")
    if title:
        fig.suptitle(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
