"""Classifying many files for predict_ser.py: one row per clip (or per speech segment of a recording), with the
error of a file that cannot be read, written as CSV or JSONL as rows arrive, through the archive runner
(ser/archive.py: sharded over processes, resumable)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ser import archive


def report(path: Path, err: Exception | str) -> str:
    message = str(err) if str(path) in str(err) else f"{path}: {err}"
    tqdm.write(f"error: {message}", file=sys.stderr)
    return message


def clip_rows(predictor, paths: list[Path], decoded: list | None = None, stats=None) -> list[dict]:
    """One row per path, in order: the clips that decode are classified together (one `classify_batch`), a file
    that does not gets its error. `decoded`: the paths' audio (or messages), when already read."""
    decoded = decoded or [_load(predictor, path) for path in paths]
    rows, audio = [], {}
    for i, (path, result) in enumerate(zip(paths, decoded)):
        if isinstance(result, str):
            rows.append({"file": str(path), "error": report(path, result)})
        else:
            audio[i] = result
            rows.append({"file": str(path)})
    if audio:
        for i, scores in zip(audio, predictor.classify_batch(list(audio.values()), stats)):
            rows[i].update(label=max(scores, key=scores.get), scores=scores, uncertain=predictor.is_uncertain(scores))
    return rows


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
    from ser.audio import AudioError

    try:
        return predictor.load_file(path)
    except (AudioError, ValueError) as err:
        return str(err)


def write_predictions(rows, labels: list[str], output: str | None) -> int:
    """CSV (file, label, one column per class, error) or JSONL (rows with a `scores` mapping), written as rows
    arrive. Returns the number of error rows."""
    failed = 0
    handle = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        jsonl = bool(output) and output.lower().endswith(".jsonl")
        writer = csv.writer(handle, lineterminator="\n")
        if not jsonl:
            writer.writerow(["file", "label", "uncertain", *labels, "error"])
        for row in rows:
            failed += "error" in row
            if jsonl:
                handle.write(json.dumps({"file": row["file"], "label": row.get("label"),
                                         "uncertain": row.get("uncertain"), "scores": row.get("scores"),
                                         "error": row.get("error")}) + "\n")
            else:
                scores = row.get("scores") or {}
                uncertain = "" if row.get("uncertain") is None else row["uncertain"]
                writer.writerow([row["file"], row.get("label") or "", uncertain, *[scores.get(l, "") for l in labels],
                                 row.get("error", "")])
            handle.flush()
    finally:
        if output:
            handle.close()
    return failed


def plot_path(plot: str, path: Path, several: bool) -> Path:
    target = Path(plot)
    return target.with_name(f"{target.stem}-{path.stem}{target.suffix or '.png'}") if several else target


def timeline_rows(predictor, path: Path, args, several: bool) -> list[dict]:
    """All speech segments of one recording (rows carry its name), with its summary on stderr and its plot; a
    failing file gives one error row."""
    from accelerate import PartialState

    from ser.audio import AudioError
    from ser.timeline import summary

    try:
        segments = predictor.timeline(path, args.segment, smooth_seconds=args.smooth)
        rows = [{"file": str(path), **row} for row in tqdm(segments, desc=path.name, unit="segment", leave=False,
                                                           file=sys.stderr,
                                                           disable=not PartialState().is_main_process)]
    except (AudioError, ValueError) as err:
        return [{"file": str(path), "start": None, "end": None, "label": None, "scores": None, "uncertain": None,
                 "error": report(path, err)}]
    shares = summary(rows)
    tqdm.write(f"{path.name}: {shares['speech_seconds']:.0f} s of speech: " + ", ".join(
        f"{label} {share:.0%}" for label, share in shares["share"].items()), file=sys.stderr)
    if args.plot:
        predictor.plot_timeline(rows, predictor.labels, plot_path(args.plot, path, several), title=path.name)
    return rows


def run_archive(predictor, files: list[Path], args, model: str) -> int:
    """Clips (batched by duration) or timelines (one recording at a time) through ser.archive: sharded over the
    launched processes, resumable, merged in input order. Returns the number of failed files."""
    if args.timeline:
        key = archive.run_key(files, mode="timeline", model=model, runtime=args.runtime, segment=args.segment,
                              smooth=args.smooth, batch_size=args.batch_size)
        return archive.run(files, lambda paths: [timeline_rows(predictor, paths[0], args, len(files) > 1)],
                           lambda rows, output: predictor.write_timeline(rows, output or "-"),
                           args.output, key, batch_size=None)
    key = archive.run_key(files, mode="clips", model=model, runtime=args.runtime, batch_size=args.batch_size)
    return archive.run(files, lambda paths: [[row] for row in clip_rows(predictor, paths)],
                       lambda rows, output: write_predictions(rows, predictor.labels, output),
                       args.output, key, batch_size=args.batch_size)
