"""Classify the emotion of audio files, or of every speech segment of a long recording.

    python predict_ser.py --model models/ser-cnn-emodb clips/ extra.wav --output predictions.csv
    python predict_ser.py --model FOLDER_OR_HUB_ID --runtime int8 clips/ --output predictions.jsonl
    python predict_ser.py --same-speaker one_speaker/ --output predictions.csv
    python predict_ser.py --timeline --smooth 10 meeting.flac --output meeting.csv --plot meeting.png

Each prediction says whether it is `uncertain`: its top probability (calibrated, where the model was) is under
ser.defaults.UNCERTAIN_BELOW.
`--same-speaker`: every input is the same person; a speaker-normalised model then normalises with statistics of all
of that person's speech (at least 10 s of it), as in training.

Folders are searched recursively for audio files (wav flac ogg mp3 m4a opus ...). A file that cannot be classified
is reported on stderr and written to the output with its `error`; the exit code is then 1. Without --output the
table goes to stdout as CSV.

Archives (ser/archive.py): clips are batched by duration, results are written as they come (to
`<output>.parts/`) and merged in input order at the end; a killed run started again skips finished files. Under
`accelerate launch --multi_gpu --num_processes N` (on a CPU-only machine this starts N CPU processes joined over
gloo) the files are shared out between the processes, or machines (`--num_machines`; the output's folder must be on
storage they share), with an output identical to one process's. `--same-speaker` needs one process.

    accelerate launch --multi_gpu --num_processes 4 predict_ser.py archive/ --output predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ser import archive, defaults
from ser.audio import find_audio_files
from ser.defaults import DEFAULT_MODEL
from ser.runtime import RUNTIMES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files and/or folders (searched recursively)")
    parser.add_argument("--model", help=f"saved model folder or Hub id (default: {DEFAULT_MODEL} beside this script)")
    parser.add_argument("--runtime", default=defaults.RUNTIME, choices=RUNTIMES,
                        help=f"CPU runtime (default: {defaults.RUNTIME})")
    parser.add_argument("--output", help="out.csv or out.jsonl (default: CSV on stdout)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default: 8)")
    parser.add_argument("--same-speaker", action="store_true",
                        help="all inputs are one speaker's: a speaker-normalised model adapts to their voice")
    parser.add_argument("--timeline", action="store_true", help="classify each speech segment of each recording")
    parser.add_argument("--segment", type=float, default=defaults.SEGMENT_SECONDS,
                        help=f"longest piece of speech classified at once, in seconds (default: {defaults.SEGMENT_SECONDS:g})")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="average each segment's scores over this many seconds around it (default: 0, none)")
    parser.add_argument("--plot", help="timeline plot (PNG); with several inputs, one per file named after it")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).suffix.lower() not in (".csv", ".jsonl"):
        parser.error("--output must end in .csv or .jsonl")
    if args.plot and not args.timeline:
        parser.error("--plot needs --timeline")
    if args.same_speaker and args.timeline:
        parser.error("--same-speaker is for clips; a --timeline recording is normalised with its own statistics")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def find_inputs(inputs: list[str]) -> list[Path]:
    """Named files as given (whatever their extension, so a wrong file is reported rather than skipped); folders
    searched recursively for audio extensions. A missing input is kept, to be reported as an error row."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += find_audio_files(path)
        else:
            files.append(path)
    return files


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from ser.predictor import EmotionPredictor

    hf_logging.disable_progress_bar()  # one progress bar (ours) is enough
    if args.same_speaker and archive.num_processes() > 1:
        print("error: --same-speaker needs all of the speaker's files in one process; run it without "
              "accelerate launch (or with --num_processes 1)", file=sys.stderr)
        return 2

    model = args.model or str(Path(__file__).resolve().parent / DEFAULT_MODEL)
    try:
        predictor = EmotionPredictor.from_pretrained(model, runtime=args.runtime)
    except (OSError, ValueError) as err:
        hint = "" if args.model else " (this is the default model; pass --model FOLDER_OR_HUB_ID)"
        print(f"error: cannot load model: {err}{hint}", file=sys.stderr)
        return 2
    predictor.batch_size = args.batch_size
    files = find_inputs(args.inputs)
    if not files:
        print("error: no audio files found in the inputs", file=sys.stderr)
        return 1
    if args.same_speaker:
        try:
            rows = classify_same_speaker(predictor, files, args.batch_size)
            failed = write_predictions(rows, predictor.labels, args.output)
        except ValueError as err:  # too little speech, or a model that does not adapt
            print(f"error: --same-speaker: {err}", file=sys.stderr)
            return 1
    else:
        try:
            failed = run_archive(predictor, files, args, model)
        except archive.ArchiveError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if failed:
        print(f"{failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
