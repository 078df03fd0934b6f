"""Batch inference over a folder of real clips: the stock `pipeline("audio-classification")` looping over the files
one by one, against `predict_ser.py` (clips batched by duration, ser/inference/archive.py) in one process and in two processes
under `accelerate launch`; and whether the two-process output is identical to the one-process output.

    python benchmarks/archive.py                              # all 535 Emo-DB clips, the default model
    python benchmarks/archive.py --corpora emodb ravdess emovo # 2563 clips of three corpora
    python benchmarks/archive.py --limit 100 --quick          # a smoke run

Every path runs the embedded default model (models/ser-cnn-mixture) with one thread per process
(OMP_NUM_THREADS=1), over the corpus folders read in place ($SER_DATA, else ../shared/data).

- stock, files (once: it is slow): `pipeline(..., trust_remote_code=True, top_k=None)` called with each file's path
  (it decodes the file itself, through ffmpeg), in a loop, after one warm-up call; the loop is timed.
- stock, arrays: the same pipeline called with each clip decoded by ser.core.audio.load_audio inside the timed loop
  (soundfile, as our predictor decodes): what the stock pipeline costs when decoding is not its bottleneck.
- ours, 1 process (in-process): `predict_ser.main([folder, "--output", ..., "--batch-size", B])` timed whole: model
  load, headers, decoding, silence trimming, batched forwards, part file and merged output (imports not timed).
  The in-process paths run `--repeats` times, alternating, and keep their best time.
- ours, 1 process / 2 processes (end to end): `python predict_ser.py` and `accelerate launch --multi_gpu
  --num_processes 2 predict_ser.py` as subprocesses, timed from start to exit (interpreter start, imports, model
  load in each process, launcher), so short runs are dominated by start-up; and (classifying, as logged) the time
  predict_ser.py reports for the work itself: headers, decoding, batches, part files and the merge.

Files/s = clips / seconds; speed-ups are ratios within this one run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, ROOT, table, write_result  # noqa: I001

MODEL = ROOT / "models" / "ser-cnn-mixture"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=["emodb"],
                        help="folders under the data folder ($SER_DATA, else ../shared/data; default: emodb)")
    parser.add_argument("--limit", type=int, help="first N clips only (a smoke run)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32],
                        help="predict_ser.py --batch-size values in-process; the first also end to end (default: 8 32)")
    parser.add_argument("--repeats", type=int, default=2, help="repetitions of the in-process paths (default: 2)")
    parser.add_argument("--runtime", default="fp32", help="predict_ser.py --runtime for our paths (default: fp32)")
    parser.add_argument("--quick", action="store_true", help="write the result as archive-quick.json")
    return parser.parse_args()


def stock_loop(files: list[Path], decode: bool) -> float:
    """Seconds for the stock pipeline to classify every file, one call per file."""
    from transformers import pipeline

    from ser.core.audio import load_audio

    classify = pipeline("audio-classification", model=str(MODEL), trust_remote_code=True, top_k=None)
    classify(str(files[0]))  # warm-up
    start = time.perf_counter()
    for path in files:
        classify(load_audio(path) if decode else str(path))
    return time.perf_counter() - start


def ours_in_process(inputs: list[str], output: Path, batch_size: int, runtime: str) -> float:
    import importlib.util

    # predict_ser.py is a script, not an installed module: loaded from its file
    spec = importlib.util.spec_from_file_location("predict_ser", ROOT / "predict_ser.py")
    predict_ser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(predict_ser)
    import ser.inference.predictor  # noqa: F401  (imports are not timed, as for the stock pipeline)

    start = time.perf_counter()
    code = predict_ser.main([*inputs, "--output", str(output), "--batch-size", str(batch_size), "--runtime", runtime])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"predict_ser.py failed with exit code {code}")
    return seconds


def ours_subprocess(launcher: list[str], inputs: list[str], output: Path, batch_size: int, runtime: str
                    ) -> tuple[float, float]:
    """(seconds from start to exit, seconds of the classification itself as predict_ser.py logs it: from the
    processes' first barrier to the merged output, without interpreter start, imports and model load)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    done = subprocess.run([*launcher, str(ROOT / "predict_ser.py"), *inputs, "--output", str(output),
                           "--batch-size", str(batch_size), "--runtime", runtime],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} predict_ser.py failed:\n{done.stderr[-3000:]}")
    logged = re.search(r"classified in ([0-9.]+) s by", done.stderr)
    return seconds, float(logged.group(1))


def best(name: str, seconds: dict, value: float) -> None:
    seconds[name] = min(value, seconds.get(name, value))


def main() -> None:
    args = parse_args()
    import torch

    from ser.core.audio import audio_duration, find_audio_files

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    folders = [DATA / corpus for corpus in args.corpora]
    files = [path for folder in folders for path in find_audio_files(folder)]
    if args.limit:
        files = files[:args.limit]
    inputs = [str(path) for path in files] if args.limit else [str(folder) for folder in folders]
    hours = sum(audio_duration(path) for path in files) / 3600
    print(f"{len(files)} clips, {hours:.2f} h of audio, from {', '.join(args.corpora)}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        seconds = {"stock pipeline, files": stock_loop(files, decode=False)}
        # The fast in-process paths alternate, `--repeats` times, and keep their best time: load from other users of
        # the shared machine then hits each alike and inflates none
        for _ in range(args.repeats):
            best("stock pipeline, arrays decoded by soundfile", seconds, stock_loop(files, decode=True))
            for size in args.batch_sizes:
                best(f"ours, 1 process, batch {size} (in-process)", seconds,
                     ours_in_process(inputs, out / f"inproc-{size}.csv", size, args.runtime))
        size = args.batch_sizes[0]
        for processes, launcher, name in ((1, [sys.executable], "one.csv"), (2, LAUNCH, "two.csv")):
            total, work = ours_subprocess(launcher, inputs, out / name, size, args.runtime)
            label = f"ours, {processes} process{'es' if processes > 1 else ''}, batch {size}"
            seconds[f"{label} (end to end)"] = total
            seconds[f"{label} (classifying, as logged)"] = work
        one = (out / "one.csv").read_bytes()
        identical = {"2 processes == 1 process": (out / "two.csv").read_bytes() == one,
                     "in-process == subprocess": (out / f"inproc-{size}.csv").read_bytes() == one,
                     "rows": one.count(b"\n") - 1}

    stock = seconds["stock pipeline, files"]
    stock_arrays = seconds["stock pipeline, arrays decoded by soundfile"]
    rows = [{"path": name, "seconds": value, "files/s": len(files) / value, "vs stock (files)": stock / value,
             "vs stock (arrays)": stock_arrays / value} for name, value in seconds.items()]
    print(table(rows, ["path", "seconds", "files/s", "vs stock (files)", "vs stock (arrays)"],
                {"seconds": ".1f", "files/s": ".1f", "vs stock (files)": ".2f", "vs stock (arrays)": ".2f"}))
    print(f"outputs: {identical}")
    write_result("archive", {"corpora": args.corpora, "clips": len(files), "audio_hours": hours,
                             "batch_sizes": args.batch_sizes, "repeats": args.repeats, "runtime": args.runtime,
                             "threads_per_process": 1, "model": str(MODEL.name),
                             "rows": rows, "identical": identical}, quick=args.quick)
    if not identical["2 processes == 1 process"]:
        raise SystemExit("2-process output differs from 1-process output")


if __name__ == "__main__":
    main()
