"""CPU inference speed, memory and agreement: stock `pipeline("audio-classification")` vs our EmotionPredictor (fp32
and every other runtime of ser/inference/runtime.py: int8, bf16, onnx, onnx-int8), on real model shapes with random encoder
weights and a fitted head.

    python benchmarks/inference.py                 # base and large, 2/4/10/30 s clips, memory in subprocesses
    python benchmarks/inference.py --quick         # base only, 2 s and 4 s, 1 warm-up + 2 repetitions
    python benchmarks/inference.py --models base --durations 2 4 --no-memory

Models (random encoder weights, emotion head with mean pooling over a weighted sum of all layers, 7 labels, saved with
`save_pretrained` as the stock class, together with the family's feature extractor, to a temporary folder). The head
is fitted as in agreement.py (400 full-batch AdamW steps on the frozen encoder's pooled layers of 64 Emo-DB clips of
speakers 03 to 14), so that its answers are confident and spread over the classes and top-1 agreement means
something:
  base   wav2vec2-base shape: Wav2Vec2Config() defaults (12 layers, hidden 768), feat_extract_norm="layer"  (95 M)
  large  HuBERT-large shape: hidden 1024, 24 layers, 16 heads, FFN 4096, layer-norm front end, stable layer norm (316 M)

Inputs: real Emo-DB speech, clips concatenated and cut to 2, 4, 10 and 30 s. Every path classifies the same raw
16 kHz float32 array, one clip per call. Repetitions are interleaved (pipeline, predictor fp32, predictor int8,
pipeline, ...) after one warm-up call of each, so that load from other users of the shared machine hits every path
alike; medians are reported and speed-ups are ratios of medians measured in this one run.

Agreement: every predictor runtime classifies held-out Emo-DB clips (speakers 15 and 16, `--agreement-clips`, one
clip per call); top-1 agreement and the largest probability difference against predictor fp32.

The ONNX paths export on their first load (into the model folder's onnx/ cache); that load is not timed, and the
memory subprocesses find the graphs already exported, as every load after the first does.

Peak memory: each path runs in its own subprocess (load the model, classify one clip of every duration); reported
as peak RSS (ru_maxrss) and as the increase over a process that has imported the same libraries.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ser.core.audio import SAMPLING_RATE
from _common import EMODB, median, table, write_result  # noqa: I001

LABELS = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]
SR = SAMPLING_RATE  # ser.core.audio, the one definition
MODELS = {
    "base": ("wav2vec2", dict(feat_extract_norm="layer")),
    "large": ("hubert", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                             feat_extract_norm="layer", do_stable_layer_norm=True)),
}


def build_model(kind: str, feature_layer: str = "weighted", seed: int = 0):
    """(model of our emotion class, feature extractor), random weights."""
    import torch

    from modeling_ser import label_maps
    from ser.training.encoders import emotion_class, feature_extractor_for

    family, encoder = MODELS[kind]
    torch.manual_seed(seed)
    cls = emotion_class(family)
    config = cls.config_class(**encoder, pooling="mean", feature_layer=feature_layer, layerdrop=0.0,
                              **label_maps(LABELS))
    model = cls(config).eval()
    assert model.is_stock_expressible
    return model, feature_extractor_for(family)


def build_folder(kind: str, folder: Path, feature_layer: str = "weighted", seed: int = 0,
                 train_clips: int = 64) -> Path:
    """Saves the model as a published one would be: stock class + feature extractor; the head fitted on
    `train_clips` Emo-DB clips (0: left random)."""
    model, feature_extractor = build_model(kind, feature_layer, seed)
    if train_clips:
        fit_head(model, feature_extractor, emodb_split(train_clips, 0)[0])
    model.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
    return folder


TEST_SPEAKERS = {"15", "16"}  # held out from the head's fit; their clips measure agreement


def emodb_split(train: int, test: int, seed: int = 0) -> tuple[list, list]:
    """(training clips of speakers 03 to 14, test clips of TEST_SPEAKERS), sampled as agreement.py samples them."""
    import random

    from ser.data.corpora import load_emodb

    clips = load_emodb(EMODB)
    rng = random.Random(seed)
    return (rng.sample([c for c in clips if c.speaker not in TEST_SPEAKERS], train),
            rng.sample([c for c in clips if c.speaker in TEST_SPEAKERS], test))


def fit_head(model, fe, clips, steps: int = 400) -> None:
    """Layer weights, projector and classifier fitted in fp32 on the frozen encoder's mean-pooled layers of `clips`
    (the head is linear up to the pooling, so fitting on pooled features is exact)."""
    import torch

    from ser.core.audio import load_audio

    with torch.inference_mode():
        pooled = []
        for clip in clips:
            inputs = fe(load_audio(clip.path, SR), sampling_rate=SR, return_tensors="pt")
            hidden = model.base_model(inputs["input_values"], output_hidden_states=True).hidden_states
            pooled.append(torch.stack([h[0].mean(0) for h in hidden]))
    pooled = torch.stack(pooled)
    labels = torch.tensor([LABELS.index(c.label) for c in clips])
    params = [model.layer_weights, *model.projector.parameters(), *model.classifier.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    for _ in range(steps):
        mixed = (pooled * torch.softmax(model.layer_weights, -1)[None, :, None]).sum(1)
        loss = torch.nn.functional.cross_entropy(model.classifier(model.projector(mixed)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"  head fitted on {len(clips)} clips, training loss {loss.item():.3f}", flush=True)


def speech(seconds: float, offset: int = 0) -> np.ndarray:
    """Real Emo-DB speech: consecutive clips (starting at clip `offset`) concatenated and cut to `seconds`."""
    from ser.core.audio import load_audio
    from ser.data.corpora import load_emodb

    clips = load_emodb(EMODB)
    need, parts, i = int(seconds * SR), [], offset
    while sum(len(p) for p in parts) < need:
        parts.append(load_audio(clips[i % len(clips)].path, SR))
        i += 1
    return np.concatenate(parts)[:need].astype(np.float32)


def runtimes() -> list[str]:
    from ser.inference.runtime import RUNTIMES
    return [r for r in RUNTIMES if r != "fp32"]


def load_path(name: str, folder: Path):
    """Returns a callable: raw 16 kHz float32 array -> {label: probability}."""
    if name == "pipeline":
        from transformers import pipeline
        pipe = pipeline("audio-classification", model=str(folder), device=-1)
        return lambda audio: {d["label"]: d["score"] for d in pipe(audio, top_k=None)}
    runtime = name.split("-", 1)[1]
    from ser.inference.predictor import EmotionPredictor
    predictor = EmotionPredictor.from_pretrained(str(folder), runtime=runtime)
    return lambda audio: predictor.classify_batch([audio])[0]


def path_names() -> list[str]:
    return ["pipeline", "predictor-fp32"] + [f"predictor-{r}" for r in runtimes()]


def time_paths(folder: Path, durations, reps: int, warmup: int, names: list[str], on_rows=None) -> list[dict]:
    import torch

    calls = {name: load_path(name, folder) for name in names}
    rows = []
    for seconds in durations:
        audio = speech(seconds)
        outputs = {}
        for name, call in calls.items():
            for _ in range(warmup):
                outputs[name] = call(audio)
        times = {name: [] for name in calls}
        for _ in range(reps):
            for name, call in calls.items():
                start = time.perf_counter()
                call(audio)
                times[name].append(time.perf_counter() - start)
        base = median(times["pipeline"])
        ref = outputs[names[1]]  # fp32
        for name in calls:
            t = median(times[name])
            top = max(outputs[name], key=outputs[name].get)
            rows.append({"clip s": seconds, "path": name, "s/clip": t, "RTF": t / seconds,
                         "speed-up vs pipeline": base / t,
                         # ratio within each interleaved round (pipeline then this path, seconds apart), then median
                         "paired speed-up": median([p / x for p, x in zip(times["pipeline"], times[name])]),
                         "all s": [round(x, 4) for x in times[name]],
                         "same top-1 as fp32": top == max(ref, key=ref.get),
                         "max |dp| vs fp32": max(abs(outputs[name][k] - ref[k]) for k in ref)})
            print(f"  {seconds:>4} s  {name:<16} {t:8.3f} s/clip  RTF {t / seconds:.3f}  x{base / t:.2f} vs pipeline",
                  flush=True)
        if on_rows:
            on_rows(rows)
        gc.collect()
    del calls
    gc.collect()
    torch.set_num_threads(torch.get_num_threads())
    return rows


def measure_agreement(folder: Path, names: list[str], clips: list) -> list[dict]:
    """Top-1 agreement and max |dp| of each predictor runtime against predictor fp32 on `clips`, one per call."""
    from ser.core.audio import load_audio

    audio = [load_audio(c.path, SR) for c in clips]
    top = lambda scores: max(scores, key=scores.get)  # noqa: E731
    probs, rows = {}, []
    for name in [n for n in names if n.startswith("predictor-")]:
        call = load_path(name, folder)
        start = time.perf_counter()
        probs[name] = [call(a) for a in audio]
        print(f"  agreement {name}: {len(clips)} clips in {time.perf_counter() - start:.0f} s", flush=True)
        del call
        gc.collect()
    ref = probs["predictor-fp32"]
    for name, rows_of in probs.items():
        rows.append({"path": name, "clips": len(clips),
                     "top-1 agreement": float(np.mean([top(p) == top(r) for p, r in zip(rows_of, ref)])),
                     "max |dp|": max(abs(p[k] - r[k]) for p, r in zip(rows_of, ref) for k in r),
                     "fp32 mean top prob": float(np.mean([max(r.values()) for r in ref])),
                     "fp32 accuracy": float(np.mean([top(r) == c.label for r, c in zip(ref, clips)]))})
    return rows


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries the parent's peak over fork+exec
    into the child's ru_maxrss, which would charge the benchmark parent's models to every child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_child(name: str, folder: str, durations, threads: int) -> None:
    """Runs in a subprocess: import, load one path, classify one clip of each duration; prints JSON."""
    import torch
    torch.set_num_threads(threads)
    import transformers  # noqa: F401  (same imports in every child, so the baseline is comparable)
    from transformers import pipeline  # noqa: F401
    import ser.inference.runtime  # noqa: F401
    import ser.inference.predictor  # noqa: F401
    audios = {s: speech(s) for s in durations}
    rss = peak_rss_mib
    report = {"after_imports_mib": rss()}
    if name != "imports-only":
        call = load_path(name, Path(folder))
        report["after_load_mib"] = rss()
        for s in durations:
            call(audios[s])
            report[f"peak_after_{s}s_mib"] = rss()
    report["peak_mib"] = rss()
    print("MEMORY " + json.dumps(report))


def measure_memory(folder: Path, durations, names: list[str], threads: int) -> dict:
    out = {}
    for name in ["imports-only", *names]:
        cmd = [sys.executable, __file__, "--memory-child", name, "--folder", str(folder), "--threads", str(threads),
               "--durations", *map(str, durations)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in proc.stdout.splitlines() if l.startswith("MEMORY ")]
        if proc.returncode or not line:
            out[name] = {"error": proc.stderr[-2000:]}
            print(f"  memory {name}: failed\n{proc.stderr[-2000:]}")
            continue
        out[name] = json.loads(line[-1][7:])
        print(f"  memory {name}: peak {out[name]['peak_mib']:.0f} MiB", flush=True)
    base = out.get("imports-only", {}).get("peak_mib")
    for name, report in out.items():
        if base and "peak_mib" in report:
            report["over_imports_mib"] = report["peak_mib"] - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["base", "large"], choices=list(MODELS))
    parser.add_argument("--durations", nargs="+", type=float, default=[2, 4, 10, 30])
    parser.add_argument("--reps", type=int, default=None, help="timed calls per path (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="skip the timing, measure peak memory only")
    parser.add_argument("--name", help="results file name (default: inference[-memory][-<models>])")
    parser.add_argument("--memory-durations", nargs="+", type=float, default=None,
                        help="clip lengths the memory subprocesses classify (default: all --durations)")
    parser.add_argument("--train-clips", type=int, default=64, help="Emo-DB clips the head is fitted on (0: random head)")
    parser.add_argument("--agreement-clips", type=int, default=100, help="held-out Emo-DB clips for agreement (0: skip)")
    parser.add_argument("--quick", action="store_true", help="base only, 2 s and 4 s, 2 repetitions, 12 agreement clips")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.durations = [int(d) if float(d).is_integer() else d for d in args.durations]

    if args.memory_child:
        peak_memory_child(args.memory_child, args.folder, args.durations, args.threads)
        return
    import torch
    torch.set_num_threads(args.threads)
    if args.quick:
        args.models, args.durations, args.reps = ["base"], [2, 4], args.reps or 2
        args.agreement_clips = min(args.agreement_clips, 12)
    names = path_names()
    print(f"paths: {names}; {torch.get_num_threads()} threads")

    rows, memory, params, agreement = [], {}, {}, []
    test_clips = emodb_split(args.train_clips, args.agreement_clips)[1] if args.agreement_clips else []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models:
            folder = build_folder(kind, Path(tmp) / kind, train_clips=args.train_clips)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            params[kind] = size / 4 / 1e6
            print(f"{kind}: {params[kind]:.1f} M parameters, saved to {folder}", flush=True)
            reps = args.reps or 3
            def partial(new_rows, kind=kind):  # a killed run still leaves the durations it finished
                write_result("inference", {"models": args.models, "partial": True, "threads": args.threads,
                                           "paths": names, "timing": rows + [{"model": kind, **r} for r in new_rows]},
                             quick=args.quick, name=args.name or result_name(args.models))
            timed = [] if args.memory_only else time_paths(folder, args.durations, reps, args.warmup, names, partial)
            rows += [{"model": kind, **row} for row in timed]
            if test_clips:
                agreement += [{"model": kind, **row} for row in measure_agreement(folder, names, test_clips)]
            if not args.no_memory:
                mem_durations = [int(d) if float(d).is_integer() else d for d in args.memory_durations or args.durations]
                memory[kind] = measure_memory(folder, mem_durations, names, args.threads)

    cols = ["model", "clip s", "path", "s/clip", "RTF", "speed-up vs pipeline", "paired speed-up", "same top-1 as fp32",
            "max |dp| vs fp32"]
    if rows:
        print(table(rows, cols, {"s/clip": ".3f", "RTF": ".3f", "speed-up vs pipeline": ".2f", "paired speed-up": ".2f",
                                 "max |dp| vs fp32": ".2g"}))
    if agreement:
        print(table(agreement, ["model", "path", "clips", "top-1 agreement", "max |dp|", "fp32 mean top prob",
                                "fp32 accuracy"], {"top-1 agreement": ".3f", "max |dp|": ".3g",
                                                   "fp32 mean top prob": ".3f", "fp32 accuracy": ".3f"}))
    mem_rows = [{"model": kind, "path": name, **{k: v for k, v in report.items() if k != "error"}}
                for kind, reports in memory.items() for name, report in reports.items()]
    if mem_rows:
        mcols = ["model", "path", "after_load_mib", "peak_mib", "over_imports_mib"]
        print(table(mem_rows, mcols, {c: ".0f" for c in mcols}))
    write_result("inference", {"models": args.models, "durations": args.durations, "threads": args.threads, "paths": names, "parameters_millions": params,
                               "reps": args.reps, "warmup": args.warmup, "timing": rows, "memory": memory,
                               "head_train_clips": args.train_clips, "agreement": agreement},
                 quick=args.quick, name=args.name or (memory_result_name if args.memory_only else result_name)(args.models))


def result_name(models) -> str:
    return "inference" if sorted(models) == sorted(MODELS) else "inference-" + "-".join(models)


def memory_result_name(models) -> str:
    return result_name(models).replace("inference", "inference-memory", 1)


if __name__ == "__main__":
    main()
