"""How much of a new speaker's speech does a speaker-normalised model need? Fold models of a speaker-normalised
leave-one-speaker-out run (train_ser.py --normalisation speaker --save_fold_models true) classify their held-out
speaker's clips through the predictor, normalised with statistics from S seconds of that speaker's speech.

    python benchmarks/speaker_adaptation.py runs/emodb6-speaker

1. Reproduction: with statistics from all of the speaker's clips (what training used), the predictor's UA per fold
   next to the fold's training-time UA from results.json.
2. The curve: pooled UA over all folds when the statistics come from a random S seconds of the speaker's speech
   (clips drawn in random order until S seconds of speech are reached; 5 draws per S), and with no speaker
   statistics at all (each clip normalised by itself, the predictor's fallback).
Writes benchmarks/results/speaker_adaptation-<run>.json and .png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import RESULTS, fold_model, run_clips, write_result
from ser.reporting import results as results_file
from ser.core.audio import load_audio
from ser.inference.predictor import EmotionPredictor
from ser.core.statistics import RunningStatistics

SECONDS = (2, 5, 10, 20, 40, 80)
DRAWS = 5


def statistics(predictor, clips: list[np.ndarray], seconds: float | None, rng) -> object:
    """Statistics of the speech of clips taken in random order until `seconds` of speech (None: all clips)."""
    stats = RunningStatistics(predictor.frame_source)
    for i in rng.permutation(len(clips)) if seconds else range(len(clips)):
        stats.add(predictor.feature_extractor.prepare(clips[i], refuse=False))
        if seconds and stats.seconds >= seconds:
            break
    return stats.result()


def fold_predictions(predictor, audio, stats) -> list[str]:
    return [max(s, key=s.get) for s in predictor.classify_batch(audio, stats)]


def ua(truth: list[str], predicted: list[str]) -> float:
    """Unweighted average recall over the emotions present in `truth`, as train_ser.py's folds compute it."""
    return float(np.mean([np.mean([p == label for t, p in zip(truth, predicted) if t == label])
                          for label in sorted(set(truth))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    results = results_file.read(args.run)
    clips = run_clips(results)
    rng = np.random.default_rng(0)
    reproduction, truth, predicted = [], [], {key: [] for key in ("none", "all", *SECONDS)}
    for fold in results["runs"][0]["folds"]:
        predictor = EmotionPredictor.from_pretrained(fold_model(args.run, results, fold["name"]))
        test = [c for c in clips if c.speaker in set(fold["test_speakers"])]
        audio = [load_audio(c.path) for c in test]
        labels = [c.label for c in test]
        truth += labels
        for key in predicted:
            draws = 1 if key in ("none", "all") else DRAWS
            for _ in range(draws):
                stats = None if key == "none" else statistics(predictor, audio, None if key == "all" else key, rng)
                predicted[key].append(fold_predictions(predictor, audio, stats))
        all_ua = ua(labels, predicted["all"][-1])
        reproduction.append({"fold": fold["name"], "training_ua": fold["ua"], "predictor_ua": float(all_ua)})
        print(f"{fold['name']}: fold UA at training {fold['ua']:.3f}, through the predictor {all_ua:.3f}")
    curve = {}
    for key, runs in predicted.items():
        draws = 1 if key in ("none", "all") else DRAWS
        per_draw = [sum((runs[f * draws + d] for f in range(len(reproduction))), []) for d in range(draws)]
        uas = [ua(truth, p) for p in per_draw]
        curve[str(key)] = {"ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas))}
        print(f"statistics from {key} {'s of speech' if key not in ('none', 'all') else ''}: pooled UA "
              f"{np.mean(uas):.3f} ± {np.std(uas):.3f}")
    name = f"speaker_adaptation-{args.run.name}"
    write_result(name, {"run": str(args.run), "reproduction": reproduction, "curve": curve})
    plot(curve, RESULTS / f"{name}.png", results["corpus"])


def plot(curve: dict, path: Path, corpus: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = list(SECONDS)
    ax.errorbar(xs, [curve[str(s)]["ua_mean"] for s in xs], yerr=[curve[str(s)]["ua_std"] for s in xs], marker="o",
                label="statistics from S s of the speaker")
    ax.axhline(curve["all"]["ua_mean"], color="green", linestyle="--", label="all of the speaker's clips")
    ax.axhline(curve["none"]["ua_mean"], color="grey", linestyle=":", label="none (each clip by itself)")
    ax.set(xscale="log", xticks=xs, xticklabels=[str(s) for s in xs], xlabel="seconds of the new speaker's speech",
           ylabel="pooled UA", title=f"{corpus}: held-out speakers, speaker-normalised model")
    ax.xaxis.set_minor_formatter(NullFormatter())  # the log axis would label its minor ticks over the major ones
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
