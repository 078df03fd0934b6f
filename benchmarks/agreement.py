"""Do the optimised runtimes give the same answers as fp32? Top-1 agreement and the largest absolute difference of
any class probability, per runtime of ser/inference/runtime.py, against fp32, on held-out real Emo-DB clips.

    python benchmarks/agreement.py            # wav2vec2-base shape, head trained on 64 clips, 100 test clips
    python benchmarks/agreement.py --quick    # 24 training clips, 12 test clips
    python benchmarks/agreement.py --model large

Why a trained head: with random weights everywhere the logits are nearly uniform, so the top-1 class flips on
differences of 1e-4 and agreement measures noise, not the runtime. The encoder keeps its random weights (no
pretrained checkpoint can be downloaded here), but the head (layer weights, projector, classifier) is fitted for a
few hundred full-batch AdamW steps, in fp32, on the frozen encoder's mean-pooled per-layer features of training
clips from 8 speakers, so that its predictions on held-out clips are confident and spread over several classes, as a
trained model's are. Agreement is then measured on clips of the 2 other speakers (never seen by the head). The
model is saved and reloaded exactly as a published one (stock class + feature extractor) and classified through
`EmotionPredictor.from_pretrained(folder, runtime=...)`, one clip per call.

If the embedded default model (`ser.core.defaults.DEFAULT_MODEL`, a trained model) exists, it is measured the same way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, table, write_result  # noqa: I001
from inference import MODELS, TEST_SPEAKERS, build_model, emodb_split, fit_head
from ser.core.audio import load_audio
from ser.core.defaults import DEFAULT_MODEL



def classifier_for(folder: Path, runtime: str):
    from ser.inference.predictor import EmotionPredictor
    predictor = EmotionPredictor.from_pretrained(str(folder), runtime=runtime)
    return (lambda audio: predictor.classify_batch([audio])[0]), "EmotionPredictor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", choices=list(MODELS))
    parser.add_argument("--train-clips", type=int, default=64)
    parser.add_argument("--test-clips", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trained-only", action="store_true",
                        help="only the embedded default model (skip the random-encoder model); writes agreement-trained.json")
    args = parser.parse_args()
    if args.quick:
        args.train_clips, args.test_clips, args.steps = 24, 12, 200
    torch.set_num_threads(args.threads)
    from ser.inference.runtime import RUNTIMES

    train, test = emodb_split(0 if args.trained_only else args.train_clips, args.test_clips)
    audio = {c.path: load_audio(c.path) for c in test}
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        targets = {}
        if not args.trained_only:
            model, fe = build_model(args.model)  # our class, weighted layer sum + mean pooling, random weights
            fit_head(model, fe, train, steps=args.steps)
            trained = Path(tmp) / "trained"
            model.save_pretrained(trained)
            fe.save_pretrained(trained)
            targets[f"{args.model} (random encoder, fitted head)"] = trained
        if (ROOT / DEFAULT_MODEL).exists():
            targets[DEFAULT_MODEL] = ROOT / DEFAULT_MODEL
        for target, path in targets.items():
            probs, via = {}, None
            for runtime in RUNTIMES:
                call, via = classifier_for(path, runtime)
                start = time.perf_counter()
                probs[runtime] = [call(audio[c.path]) for c in test]
                print(f"{target} {runtime}: {len(test)} clips in {time.perf_counter() - start:.0f} s", flush=True)
                del call
            ref = probs["fp32"]
            names = list(ref[0])
            top = lambda p: max(p, key=p.get)  # noqa: E731
            fp32_top = [top(p) for p in ref]
            info = {"via": via, "test_clips": len(test),
                    "fp32_accuracy_on_test": float(np.mean([t == c.label for t, c in zip(fp32_top, test)])),
                    "fp32_mean_top_probability": float(np.mean([max(p.values()) for p in ref])),
                    "fp32_classes_predicted": {n: fp32_top.count(n) for n in names if fp32_top.count(n)},
                    "runtimes": {}}
            for runtime in RUNTIMES:
                if runtime == "fp32":
                    continue
                agree = float(np.mean([top(p) == t for p, t in zip(probs[runtime], fp32_top)]))
                diff = max(abs(p[k] - r[k]) for p, r in zip(probs[runtime], ref) for k in names)
                info["runtimes"][runtime] = {"top1_agreement": agree, "max_abs_prob_diff": diff}
                rows.append({"model": target, "runtime": runtime, "clips": len(test), "top-1 agreement": agree,
                             "max |dp|": diff, "fp32 mean top prob": info["fp32_mean_top_probability"],
                             ">=99%": agree >= 0.99})
            results[target] = info
            print(f"{target}: fp32 predicts {info['fp32_classes_predicted']}, mean top probability "
                  f"{info['fp32_mean_top_probability']:.3f}, test accuracy {info['fp32_accuracy_on_test']:.3f}")
    print(table(rows, ["model", "runtime", "clips", "top-1 agreement", "max |dp|", "fp32 mean top prob", ">=99%"],
                {"top-1 agreement": ".3f", "max |dp|": ".3g", "fp32 mean top prob": ".3f"}))
    write_result("agreement", {"model": args.model, "train_clips": len(train), "test_speakers": sorted(TEST_SPEAKERS),
                               "head_fit_steps": args.steps, "results": results, "table": rows}, quick=args.quick,
                 name="agreement-trained" if args.trained_only else None)


if __name__ == "__main__":
    main()
