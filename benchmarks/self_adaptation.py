"""Does a recording gain from adapting to itself? A model trained with global frame statistics classifies each
held-out speaker's clips with its saved statistics ("unadapted") and with statistics of the recording they form
("adapted": its own speech, no label; what `ser-adapt` would compute from it). A recording is a set of one held-out
speaker's clips:

- "speaker, all": every clip of the speaker (2 to 5 minutes of speech, all emotions in equal measure);
- "speaker, 60 s" / "speaker, 30 s": the speaker's clips in a shuffled order, cut into recordings of that much speech;
- "one emotion, 75 %" / "one emotion, 100 %": for each emotion, the speaker's clips of it, with other emotions'
  clips as a quarter of the recording or none: a recording that is mostly one emotion, where normalising with its
  own statistics may take away what it is trying to show.

Each clip's encoder frames are computed once per fold model; accuracy and UA pooled over every recording's clips.
`--weight` moves the statistics only part of the way to the recording's own, `--part` only their mean or std.

    python train_ser.py --config configs/mixture.yaml          # the main job: fold models in runs/mixture
    python benchmarks/self_adaptation.py runs/mixture
    python benchmarks/self_adaptation.py runs/mixture --weight 0.25
    python benchmarks/self_adaptation.py runs/mixture --part std

Writes benchmarks/results/self_adaptation-<run>[-<part>-<weight>].json.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from _common import fold_model, run_clips, table, write_result
from ser.core.audio import SAMPLING_RATE, AudioError
from ser.core.statistics import EncoderFrames, cached_frame_statistics
from ser.inference.predictor import EmotionPredictor
from ser.reporting import results as results_file
from ser.reporting.metrics import classification_metrics

SCENARIOS = ("speaker, all", "speaker, 60 s", "speaker, 30 s", "one emotion, 75 %", "one emotion, 100 %")


def recordings(clips: list[dict], scenario: str, rng: random.Random) -> list[list[int]]:
    """Indices into one speaker's `clips` (dicts with label and seconds) of each recording of the scenario."""
    order = list(range(len(clips)))
    if scenario == "speaker, all":
        return [order]
    if scenario.startswith("speaker"):
        seconds, found, current, held = float(scenario.split()[1]), [], [], 0.0
        rng.shuffle(order)
        for i in order:
            current.append(i)
            held += clips[i]["seconds"]
            if held >= seconds:
                found.append(current)
                current, held = [], 0.0
        return found + ([current] if held >= seconds / 2 else [])
    share = float(scenario.split()[2]) / 100
    found = []
    for label in sorted({clip["label"] for clip in clips}):
        mine = [i for i in order if clips[i]["label"] == label]
        others = [i for i in order if clips[i]["label"] != label]
        found.append(mine + rng.sample(others, min(len(others), round(len(mine) * (1 - share) / share))))
    return found


@torch.no_grad()
def speaker_frames(predictor: EmotionPredictor, paths: list[Path]) -> list[tuple[torch.Tensor, float] | None]:
    """Each clip's encoder frames as the model reads them and its seconds of speech (None where it is refused)."""
    source = EncoderFrames(predictor.model, predictor.feature_extractor)
    found = []
    for path in paths:
        try:
            speech = predictor.feature_extractor.prepare(predictor.load_file(path))
        except AudioError:
            found.append(None)
            continue
        found.append((source(speech), speech.size / SAMPLING_RATE))
    return found


@torch.no_grad()
def classify(model, frames: list[torch.Tensor], stats: torch.Tensor) -> list[int]:
    model.frame_stats.copy_(stats)
    return [int(model.classify(f[None], torch.ones(1, len(f), dtype=torch.bool)).argmax()) for f in frames]


def adapted_statistics(saved: torch.Tensor, own: torch.Tensor, weight: float, part: str) -> torch.Tensor:
    """The saved (mean, std) moved `weight` of the way to the recording's own, in the parts named."""
    mixed = weight * own + (1 - weight) * saved
    return torch.stack([mixed[0] if part in ("both", "mean") else saved[0],
                        mixed[1] if part in ("both", "std") else saved[1]])


def fold_rows(predictor: EmotionPredictor, test: list, labels: list[str], rng: random.Random, weight: float,
              part: str) -> dict:
    """{scenario: {"truth": [...], "unadapted": [...], "adapted": [...], "minutes": [...]}} for one fold's speakers."""
    model, saved = predictor.model, predictor.model.frame_stats.clone()
    out = {name: {"truth": [], "unadapted": [], "adapted": [], "minutes": []} for name in SCENARIOS}
    for speaker in sorted({clip.speaker for clip in test}):
        mine = [clip for clip in test if clip.speaker == speaker]
        frames = speaker_frames(predictor, [clip.path for clip in mine])
        clips = [{"label": labels.index(clip.label), "frames": got[0], "seconds": got[1]}
                 for clip, got in zip(mine, frames) if got is not None]
        for clip, answer in zip(clips, classify(model, [c["frames"] for c in clips], saved)):
            clip["unadapted"] = answer  # the saved statistics do not depend on the recording: once per clip
        for name in SCENARIOS:
            for recording in recordings(clips, name, rng):
                chosen = [clips[i] for i in recording]
                own = cached_frame_statistics([clip["frames"].numpy() for clip in chosen])
                out[name]["truth"] += [clip["label"] for clip in chosen]
                out[name]["unadapted"] += [clip["unadapted"] for clip in chosen]
                out[name]["adapted"] += classify(model, [c["frames"] for c in chosen],
                                                 adapted_statistics(saved, own, weight, part))
                out[name]["minutes"].append(sum(c["seconds"] for c in chosen) / 60)
    model.frame_stats.copy_(saved)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a train_ser.py run with --save_fold_models true (the main job's)")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the clips into recordings")
    parser.add_argument("--weight", type=float, default=1.0,
                        help="how far the statistics move to the recording's own (1: all the way; 0.5: half)")
    parser.add_argument("--part", choices=("both", "mean", "std"), default="both", help="which statistics move")
    args = parser.parse_args()
    results = results_file.read(args.run)
    labels, clips, rng = results["labels"], run_clips(results), random.Random(args.seed)
    pooled = {name: {"truth": [], "unadapted": [], "adapted": [], "minutes": []} for name in SCENARIOS}
    for fold in results["runs"][0]["folds"]:
        test = [clip for clip in clips if clip.speaker in set(fold["test_speakers"])]
        predictor = EmotionPredictor.from_pretrained(fold_model(args.run, results, fold["name"]), runtime="fp32")
        for name, got in fold_rows(predictor, test, labels, rng, args.weight, args.part).items():
            for key, values in got.items():
                pooled[name][key] += values
        print(fold["name"], "done")
    rows = []
    for name, got in pooled.items():
        row = {"recording": name, "recordings": len(got["minutes"]),
               "minutes of speech (median)": round(float(np.median(got["minutes"])), 2), "clips": len(got["truth"])}
        for key in ("unadapted", "adapted"):
            metrics = classification_metrics(got["truth"], got[key], len(labels))
            row[f"accuracy {key}"], row[f"UA {key}"] = round(metrics["wa"], 3), round(metrics["ua"], 3)
        rows.append(row)
    print(table(rows, list(rows[0])))
    suffix = "" if (args.weight, args.part) == (1.0, "both") else f"-{args.part}-{args.weight:g}"
    write_result(f"self_adaptation-{args.run.name}{suffix}", {"run": str(args.run), "weight": args.weight,
                                                               "part": args.part, "rows": rows})


if __name__ == "__main__":
    main()
