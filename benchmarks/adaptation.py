"""Adaptation without labels on a corpus the model never heard: each fold model of a leave-one-corpus-out run is
adapted with `ser-adapt` (ser/training/adaptation.py) to its held-out corpus's own audio, labels unused, and then classifies
that corpus through the predictor; pooled UA per held-out corpus, unadapted and adapted, side by side, for every
seed's fold models, then mean ± std over the seeds.

    python train_ser.py --config configs/mixture.yaml --protocol loco --train_final_model false \\
        --save_fold_models true --output_dir runs/mixture-loco
    python benchmarks/adaptation.py runs/mixture-loco

The unadapted UA is measured here through the predictor too, next to the fold's UA from results.json (they agree
unless the predictor refuses a clip: a refused clip counts as wrong). Writes benchmarks/results/adaptation-<run>.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _common import fold_model, run_clips, table, write_result
from ser.reporting import results as results_file
from ser.training.adaptation import adapt
from ser.core.audio import AudioError
from ser.reporting.metrics import classification_metrics
from ser.inference.predictor import EmotionPredictor


def predictions(folder: Path, paths: list, labels: list[str]) -> list[int]:
    """Label indices for the clips (-1 where the predictor refuses one)."""
    predictor = EmotionPredictor.from_pretrained(folder, runtime="fp32")
    out = []
    for path in paths:
        try:
            scores = predictor.classify_file(path)
            out.append(labels.index(max(scores, key=scores.get)))
        except AudioError:
            out.append(-1)
    return out


def over_seeds(rows: list[dict]) -> list[dict]:
    """Per held-out corpus, each UA as mean ± std over the seeds' fold models."""
    summary = []
    for name in dict.fromkeys(row["held out"] for row in rows):
        mine = [row for row in rows if row["held out"] == name]
        line = {"held out": name, "seeds": len(mine)}
        for key in ("UA at training", "UA unadapted", "UA adapted"):
            values = [row[key] for row in mine]
            line[key] = f"{np.mean(values):.3f} ± {np.std(values):.3f}"
        summary.append(line)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a leave-one-corpus-out train_ser.py run with --save_fold_models true")
    args = parser.parse_args()
    results = results_file.read(args.run)
    labels, clips, rows = results["labels"], run_clips(results), []
    for run in results["runs"]:  # every seed's fold models
        for fold in run["folds"]:
            test = [clip for clip in clips if clip.speaker in set(fold["test_speakers"])]
            truth = [labels.index(clip.label) for clip in test]
            model = fold_model(args.run, results, fold["name"], run["seed"])
            with tempfile.TemporaryDirectory() as folder:
                adapted = adapt(model, [clip.path for clip in test], Path(folder) / "adapted")
                ua = {name: classification_metrics(truth, predictions(path, [c.path for c in test], labels),
                                                   len(labels))["ua"] for name, path in (("unadapted", model),
                                                                                          ("adapted", adapted))}
            rows.append({"held out": fold["name"], "seed": run["seed"], "clips": len(test),
                         "UA at training": fold["ua"], "UA unadapted": ua["unadapted"], "UA adapted": ua["adapted"]})
            print(rows[-1])
    summary = over_seeds(rows)
    print(table(summary, list(summary[0])))
    write_result(f"adaptation-{args.run.name}", {"run": str(args.run), "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
