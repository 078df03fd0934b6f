"""Every runtime of the predictor against fp32 on the default model's fold models (frozen Whisper tiny.en encoder +
trained head): top-1 agreement and largest probability difference on held-out speakers, and speed per call.

    python train_ser.py --config configs/mixture.yaml --save_fold_models true      # runs/mixture/<fold>/model
    python benchmarks/default_runtimes.py                     # runs/mixture, 2 folds, 200 clips, 2/4/10 s, 5 reps
    python benchmarks/default_runtimes.py --run runs/bench-dev --folds 1 --clips 20 --reps 2 --durations 4
    python benchmarks/default_runtimes.py --quick             # the line above's sizes on --run, writes *-quick.json

Runtimes: every one of ser/inference/runtime.py (fp32, int8, bf16, onnx, onnx-int8), each through
`EmotionPredictor.from_pretrained(<fold>/model, runtime=...)`. The ONNX runtimes export a graph on their first load
into the model folder's onnx/ cache; load seconds are recorded (the first one includes that export) and not timed
below. A runtime that fails to load or to classify (an export refusal, ...) is recorded with its error message and
the others go on.

Agreement: each of the first --folds folds of the run (train_ser.py's order, as results.json lists them) loads its
fold model in every runtime and classifies clips of its own test speakers (`test_speakers` of the fold; a mixture's
speakers are "<corpus>-<speaker>" as `ser.data.corpora.load_mixture` names them, e.g. "emodb-03", "ravdess-01",
"emovo-f1"), --clips in all split evenly over the folds, every n-th clip in file order (spread over the fold's speakers
and corpora); one clip per call (`classify_batch([clip])`). Top-1 agreement with fp32 and the largest absolute
difference of any class probability, pooled over the folds and per fold.

Speed: the first fold's model in every runtime; inputs are real speech of that fold's held-out clips (all of them,
in file order), concatenated and cut to each of --durations seconds; every runtime classifies the same array, one
clip per call (the predictor trims leading and trailing non-speech, as in training). Per duration: --warmup calls
of each runtime, then --reps repetitions interleaved (fp32, int8, bf16, onnx, onnx-int8, fp32, ...) so that load
from other jobs hits every runtime alike. Medians; the speed-up is fp32's median over the runtime's median in this
same run ("paired": the median of the per-repetition ratios). torch.set_num_threads(--threads) before anything
loads; the ONNX sessions take the same thread count.

The CPU: its model name and the flags that decide the reduced-precision kernels (ser.inference.runtime.RUNTIME_FLAGS: AVX2,
AVX-512, VNNI, native bf16, AMX), printed first and written beside the figures ("cpu"): the int8 runtimes' agreement
and bf16's speed depend on them.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import torch

from ser.core.audio import SAMPLING_RATE
from _common import ROOT, cpu_model, fold_model, median, run_clips, table, write_result  # noqa: I001

SR = SAMPLING_RATE  # ser.core.audio, the one definition


def every_nth(items: list, count: int) -> list:
    return items[:: max(1, len(items) // count)][:count]


def error_text(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip()[:1000]}"


def load_runtimes(model: Path, runtimes: list[str], errors: dict, fold: str) -> tuple[dict, dict]:
    """{runtime: one-clip callable} for the runtimes that load, {runtime: load seconds}; failures go to `errors`."""
    from ser.inference.predictor import EmotionPredictor

    calls, seconds = {}, {}
    for runtime in runtimes:
        start = time.perf_counter()
        try:
            predictor = EmotionPredictor.from_pretrained(model, runtime=runtime)
        except Exception as err:  # noqa: BLE001 (any refusal is a result, recorded, and the others go on)
            errors.setdefault(runtime, []).append({"fold": fold, "stage": "load", "error": error_text(err)})
            print(f"  {runtime}: failed to load: {error_text(err)[:300]}", flush=True)
            continue
        seconds[runtime] = time.perf_counter() - start
        calls[runtime] = lambda audio, p=predictor: p.classify_batch([audio])[0]
        print(f"  {runtime}: loaded in {seconds[runtime]:.1f} s", flush=True)
    if "fp32" not in calls:
        raise SystemExit(f"{model}: fp32 does not load: {errors['fp32'][-1]['error']}")
    return calls, seconds


def classify_all(calls: dict, audio: list, errors: dict, fold: str) -> dict:
    """{runtime: [probabilities per clip]}; a runtime that fails on a clip is dropped for this fold."""
    probs = {}
    for runtime, call in calls.items():
        start = time.perf_counter()
        try:
            probs[runtime] = [call(a) for a in audio]
        except Exception as err:  # noqa: BLE001
            errors.setdefault(runtime, []).append({"fold": fold, "stage": "classify", "error": error_text(err)})
            print(f"  {runtime}: failed to classify: {error_text(err)[:300]}", flush=True)
            continue
        print(f"  {runtime}: {len(audio)} clips in {time.perf_counter() - start:.1f} s", flush=True)
    return probs


def compare(probs: list, ref: list) -> dict:
    """Top-1 agreement, and each clip's largest class-probability difference: its maximum and mean over the clips."""
    top = lambda p: max(p, key=p.get)  # noqa: E731
    per_clip = [max(abs(p[k] - r[k]) for k in r) for p, r in zip(probs, ref)]
    return {"top1_agreement": float(np.mean([top(p) == top(r) for p, r in zip(probs, ref)])),
            "max_abs_prob_diff": float(max(per_clip)), "mean_abs_prob_diff": float(np.mean(per_clip))}


def cpu() -> dict:
    """The CPU's model name, and which of the flags that decide the runtimes' kernels it has (ser.inference.runtime)."""
    from ser.inference.runtime import RUNTIME_FLAGS, cpu_flags, native_bf16

    flags = cpu_flags()
    return {"model": cpu_model(), "flags": {flag: flag in flags for flag in RUNTIME_FLAGS},
            "native_bf16": native_bf16(flags)}


def speech(clips: list, seconds: float) -> np.ndarray:
    """The held-out clips' audio, concatenated in order and cut to `seconds`."""
    from ser.core.audio import load_audio

    need, parts, i = int(seconds * SR), [], 0
    while sum(len(p) for p in parts) < need:
        parts.append(load_audio(clips[i % len(clips)].path, SR))
        i += 1
    return np.concatenate(parts)[:need].astype(np.float32)


def time_runtimes(calls: dict, clips: list, durations, reps: int, warmup: int, errors: dict, fold: str) -> list:
    rows = []
    for seconds in durations:
        audio = speech(clips, seconds)
        live = dict(calls)
        for runtime, call in calls.items():
            try:
                for _ in range(warmup):
                    call(audio)
            except Exception as err:  # noqa: BLE001
                errors.setdefault(runtime, []).append({"fold": fold, "stage": f"speed {seconds} s",
                                                       "error": error_text(err)})
                del live[runtime]
        times = {runtime: [] for runtime in live}
        for _ in range(reps):
            for runtime, call in live.items():
                start = time.perf_counter()
                call(audio)
                times[runtime].append(time.perf_counter() - start)
        base = median(times["fp32"])
        for runtime, values in times.items():
            t = median(values)
            rows.append({"clip s": seconds, "runtime": runtime, "s/call": t, "RTF": t / seconds,
                         "speed-up vs fp32": base / t,
                         "paired speed-up": median([f / x for f, x in zip(times["fp32"], values)]),
                         "all s": [round(x, 4) for x in values]})
            print(f"  {seconds:>4} s  {runtime:<10} {t:8.4f} s/call  x{base / t:.2f} vs fp32", flush=True)
        gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "mixture",
                        help="train_ser.py output folder with fold models (--save_fold_models true)")
    parser.add_argument("--folds", type=int, default=2, help="the first N folds of the run (agreement)")
    parser.add_argument("--clips", type=int, default=200, help="held-out clips in all, split evenly over the folds")
    parser.add_argument("--durations", nargs="+", type=float, default=[2, 4, 10])
    parser.add_argument("--reps", type=int, default=5, help="timed calls per runtime and duration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", help="results file name (default: default_runtimes-<run folder name>)")
    parser.add_argument("--quick", action="store_true", help="1 fold, 20 clips, 4 s, 2 repetitions")
    args = parser.parse_args()
    if args.quick:
        args.folds, args.clips, args.durations, args.reps = 1, 20, [4], 2
    args.durations = [int(d) if float(d).is_integer() else d for d in args.durations]
    torch.set_num_threads(args.threads)
    from ser.reporting import results as results_file
    from ser.core.audio import load_audio
    from ser.inference.runtime import RUNTIMES

    run = args.run if args.run.is_absolute() else Path.cwd() / args.run
    results = results_file.read(run)
    clips = run_clips(results)
    folds = results["runs"][0]["folds"][:args.folds]
    per_fold = max(1, args.clips // len(folds))
    runtimes = list(RUNTIMES)
    processor = cpu()
    print(f"CPU: {processor['model']}; " + ", ".join(f"{flag} {'yes' if has else 'no'}"
                                                   for flag, has in processor["flags"].items()))
    print(f"{run}: {len(folds)} folds, {per_fold} clips each; runtimes {runtimes}; {torch.get_num_threads()} threads")

    errors, loads, fold_rows, pooled, speed = {}, {}, [], {}, []
    for number, fold in enumerate(folds):
        speakers = set(fold["test_speakers"])
        test = [c for c in clips if c.speaker in speakers]
        if not test:
            raise SystemExit(f"fold {fold['name']}: no clips of its test speakers {sorted(speakers)} "
                             f"in {results['corpus']}")
        chosen = every_nth(test, per_fold)
        print(f"fold {fold['name']}: test speakers {sorted(speakers)}, {len(test)} clips, {len(chosen)} classified")
        model = fold_model(run, results, fold["name"])
        calls, loads[fold["name"]] = load_runtimes(model, runtimes, errors, fold["name"])
        probs = classify_all(calls, [load_audio(c.path, SR) for c in chosen], errors, fold["name"])
        ref = probs["fp32"]
        top = [max(p, key=p.get) for p in ref]
        fold_rows.append({"fold": fold["name"], "test_speakers": sorted(speakers), "clips": len(chosen),
                          "fp32_accuracy": float(np.mean([t == c.label for t, c in zip(top, chosen)])),
                          "runtimes": {r: compare(p, ref) for r, p in probs.items() if r != "fp32"}})
        for runtime, p in probs.items():
            pooled.setdefault(runtime, ([], []))[0].extend(p)
            pooled[runtime][1].extend(ref)
        if number == 0:  # speed on the first fold's model, already loaded in every runtime
            speed = time_runtimes(calls, test, args.durations, args.reps, args.warmup, errors, fold["name"])
        del calls
        gc.collect()

    rows = [{"runtime": r, "clips": len(p), **compare(p, ref)} for r, (p, ref) in pooled.items() if r != "fp32"]
    rows += [{"runtime": r, "clips": 0, "error": e[-1]["error"][:120]} for r, e in errors.items() if r not in pooled]
    print(table(rows, ["runtime", "clips", "top1_agreement", "max_abs_prob_diff", "mean_abs_prob_diff", "error"],
                {"top1_agreement": ".3f", "max_abs_prob_diff": ".3g", "mean_abs_prob_diff": ".3g"}))
    print(table(speed, ["clip s", "runtime", "s/call", "RTF", "speed-up vs fp32", "paired speed-up"],
                {"s/call": ".4f", "RTF": ".4f", "speed-up vs fp32": ".2f", "paired speed-up": ".2f"}))
    for runtime, entries in errors.items():
        print(f"{runtime} failed: " + "; ".join(f"{e['fold']} ({e['stage']}): {e['error'][:300]}" for e in entries))
    write_result("default_runtimes", {"cpu": processor, "run": str(args.run), "corpus": results["corpus"],
                                      "labels": results["labels"],
                                      "threads": args.threads, "durations": args.durations, "reps": args.reps,
                                      "warmup": args.warmup, "runtimes": runtimes, "agreement": rows,
                                      "agreement_per_fold": fold_rows, "load_seconds": loads, "speed": speed,
                                      "errors": errors},
                 quick=args.quick, name=args.name or f"default_runtimes-{run.name}")


if __name__ == "__main__":
    main()
