"""Classifying many files for predict_ser.py: one row per clip (or per speech segment of a recording), with the
error of a file that cannot be read, written as CSV or JSONL as rows arrive, through the archive runner
(ser/inference/archive.py: sharded over processes, resumable)."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from ser.inference import archive
from ser.inference import rows as outputs
from ser.inference.rows import Prediction, Segment


def report(path: Path, err: Exception | str) -> str:
    message = str(err) if str(path) in str(err) else f"{path}: {err}"
    tqdm.write(f"error: {message}", file=sys.stderr)
    return message


def clip_rows(predictor, paths: list[Path], decoded: list | None = None, stats=None) -> list[Prediction]:
    """One row per path, in order: the clips that decode are classified together (one `classify_batch`), a file
    that does not gets its error. `decoded`: the paths' audio (or messages), when already read."""
    decoded = decoded or [_load(predictor, path) for path in paths]
    audio = {i: result for i, result in enumerate(decoded) if not isinstance(result, str)}
    scores = dict(zip(audio, predictor.classify_batch(list(audio.values()), stats))) if audio else {}
    return [Prediction.of(scores[i], predictor.uncertain_below, file=str(path)) if i in scores
            else Prediction(file=str(path), error=report(path, decoded[i])) for i, path in enumerate(paths)]


def classify_same_speaker(predictor, files: list[Path], batch_size: int):
    """Rows in input order, every clip normalised with the statistics of all of them: all files are decoded first
    (once), then classified `batch_size` at a time."""
    decoded = [_load(predictor, path) for path in tqdm(files, desc="reading the speaker", unit="file",
                                                        file=sys.stderr)]
    stats = predictor.speaker_statistics([a for a in decoded if not isinstance(a, str)])
    for first in tqdm(range(0, len(files), batch_size), desc="classifying", unit="batch", file=sys.stderr):
        yield from clip_rows(predictor, files[first:first + batch_size], decoded[first:first + batch_size], stats)


def _load(predictor, path: Path):
    """The file's audio, or the message saying why it cannot be read (reported when the file's row is written)."""
    from ser.core.audio import AudioError

    try:
        return predictor.load_file(path)
    except (AudioError, ValueError) as err:
        return str(err)


def plot_path(plot: str, path: Path, several: bool) -> Path:
    target = Path(plot)
    return target.with_name(f"{target.stem}-{path.stem}{target.suffix or '.png'}") if several else target


def timeline_rows(predictor, path: Path, args, several: bool) -> list[Segment]:
    """All speech segments of one recording (rows carry its name) as its summary has them (smoothed where asked),
    with the summary on stderr and its plot; a failing file gives one error row."""
    from dataclasses import replace

    from accelerate import PartialState

    from ser.core.audio import AudioError

    try:
        segments = predictor.timeline(path, args.segment, words=args.words, language=args.language)
        rows = list(tqdm(segments, desc=path.name, unit="segment", leave=False, file=sys.stderr,
                         disable=not PartialState().is_main_process))
    except (AudioError, ValueError) as err:
        return [Segment(file=str(path), error=report(path, err))]
    summary = predictor.summarise(rows, args.smooth)
    tqdm.write(f"{path.name}: {summary.speech_seconds:.0f} s of speech, mostly {summary.headline}: " + ", ".join(
        f"{label} {share:.0%}" for label, share in summary.shares.items()) + " of the speech time; unsure for "
        f"{summary.unsure_share:.0%}", file=sys.stderr)
    if args.plot:
        predictor.plot_timeline(summary, plot_path(args.plot, path, several), title=path.name)
    return [replace(row, file=str(path)) for row in summary.segments]


def run_archive(predictor, files: list[Path], args, model: str) -> int:
    """Clips (batched by duration) or timelines (one recording at a time) through ser.inference.archive: sharded over the
    launched processes, resumable, merged in input order. Returns the number of failed files."""
    if args.timeline:
        key = archive.run_key(files, mode="timeline", model=model, runtime=args.runtime, segment=args.segment,
                              smooth=args.smooth, batch_size=args.batch_size, words=args.words, language=args.language)
        return archive.run(files, lambda paths: [timeline_rows(predictor, paths[0], args, len(files) > 1)],
                           lambda rows, output: outputs.write(rows, predictor.labels, output, words=args.words),
                           args.output, key, batch_size=None)
    key = archive.run_key(files, mode="clips", model=model, runtime=args.runtime, batch_size=args.batch_size)
    return archive.run(files, lambda paths: [[row] for row in clip_rows(predictor, paths)],
                       lambda rows, output: outputs.write(rows, predictor.labels, output),
                       args.output, key, batch_size=args.batch_size)
