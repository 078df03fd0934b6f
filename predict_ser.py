"""Classify the emotion of audio files, or of every speech segment of a long recording.

    python predict_ser.py --model models/ser-cnn-emodb clips/ extra.wav --output predictions.csv
    python predict_ser.py --model FOLDER_OR_HUB_ID --runtime int8 clips/ --output predictions.jsonl
    python predict_ser.py --same-speaker one_speaker/ --output predictions.csv
    python predict_ser.py --timeline --smooth 10 meeting.flac --output meeting.csv --plot meeting.png
    python predict_ser.py --timeline --words interview.wav --output interview.csv   # and what was said, per segment

Each prediction says whether it is `uncertain`: its top probability (calibrated, where the model was) is under
ser.core.defaults.UNCERTAIN_BELOW.
`--same-speaker`: every input is the same person; a speaker-normalised model then normalises with statistics of all
of that person's speech (at least 10 s of it), as in training.

Folders are searched recursively for audio files (wav flac ogg mp3 m4a opus ...). A file that cannot be classified
is reported on stderr and written to the output with its `error`; the exit code is then 1. Without --output the
table goes to stdout as CSV.

Archives (ser/inference/archive.py): clips are batched by duration, results are written as they come (to
`<output>.parts/`) and merged in input order at the end; a killed run started again skips finished files. Under
`accelerate launch --multi_gpu --num_processes N` (on a CPU-only machine this starts N CPU processes joined over
gloo) the files are shared out between the processes, or machines (`--num_machines`; the output's folder must be on
storage they share), with an output identical to one process's. `--same-speaker` needs one process.

    accelerate launch --multi_gpu --num_processes 4 predict_ser.py archive/ --output predictions.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.inference import archive
from ser.core import defaults
from ser.inference import rows as outputs
from ser.inference.batch_prediction import classify_same_speaker, run_archive
from ser.core.audio import find_audio_files
from ser.core.defaults import DEFAULT_MODEL
from ser.inference.runtime import RUNTIMES


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
                        help="average each segment's scores over this many seconds around it, within a stretch of "
                             "speech (never across a pause; default: 0, none)")
    parser.add_argument("--plot", help="timeline plot (PNG); with several inputs, one per file named after it")
    parser.add_argument("--words", action="store_true",
                        help="with --timeline: each segment's words too (the Whisper decoder, in the same encoder "
                             "pass as its emotion; Whisper models only)")
    parser.add_argument("--language", help="with --words: the language spoken (code or name, e.g. de or german); "
                                           "default: detected per segment")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).suffix.lower() not in (".csv", ".jsonl"):
        parser.error("--output must end in .csv or .jsonl")
    if args.plot and not args.timeline:
        parser.error("--plot needs --timeline")
    if args.words and not args.timeline:
        parser.error("--words needs --timeline (words are given per speech segment)")
    if args.language and not args.words:
        parser.error("--language is for --words")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from ser.inference.predictor import EmotionPredictor

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
    if args.words:
        try:
            predictor.transcriber.check_language(args.language)  # no decoder, or a language it cannot write: now
        except ValueError as err:
            print(f"error: --words: {err}", file=sys.stderr)
            return 2
    files = find_inputs(args.inputs)
    if not files:
        print("error: no audio files found in the inputs", file=sys.stderr)
        return 1
    if args.same_speaker:
        try:
            rows = classify_same_speaker(predictor, files, args.batch_size)
            failed = outputs.write(rows, predictor.labels, args.output)
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
