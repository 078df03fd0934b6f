"""Does the answer survive real recording conditions? Each held-out clip is classified as it is and after one
perturbation at a time; the table gives how often the top label changes, and the accuracy.

    python benchmarks/robustness.py runs/emodb-folds runs/mixture    # fold models (train_ser.py --save_fold_models)
    python benchmarks/robustness.py --model models/ser-cnn-emodb --corpus emovo   # one model on a corpus it never saw

Clips are always voices the model never heard: with run folders, each fold's model (`<fold>/model`) on its own test
speakers; with --model, a whole corpus the model was not trained on. Up to --clips-per-fold clips are taken per fold
(every n-th test clip in file order). Perturbations (speech untouched otherwise):
  silence-2s    2 s of digital silence before and after
  noise-2s      2 s of white noise at -50 dBFS RMS before and after
  gain+12 / gain-12   the whole clip 12 dB louder (clipped at full scale) or quieter
  quiet-48      scaled to a -48 dBFS peak (must be classified, not refused)
  tel-8k        band-limited to telephone rate: resampled to 8 kHz and back
  mp3           an MP3 round trip through ffmpeg (libmp3lame, 64 kbit/s)
  snr-20 / snr-10 / snr-5   white noise over the whole clip, 20, 10 or 5 dB below the clip's mean power
`--perturbations noise-2s silence-2s` runs only those (a cheaper run: e.g. every clip of a corpus for the padding
rows). `--detector energy` serves the same models with the energy speech detector instead of the one they record, for
the old-and-new comparison (the models themselves unchanged). Writes benchmarks/results/robustness-<name>.json and
prints two markdown tables: the share of clips whose top label changes (and how many were refused as "no speech"), and UA
(unweighted accuracy) as they are and under each perturbation.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from _common import DATA, fold_model, run_clips, write_result
from ser.reporting import results as results_file
from ser.core.audio import SAMPLING_RATE as SR
from ser.core.audio import load_audio
from ser.data.augment import add_noise, band_limit
from ser.data.corpora import load_corpus
from ser.reporting.metrics import classification_metrics
from ser.inference.predictor import EmotionPredictor
from speech_ser import DETECTORS, Detector

REFUSED = "refused"  # a clip the predictor refused, as a class of its own in the UA
NOISE_DB = -50.0


def pad(audio, filler):
    return np.concatenate([filler, audio, filler])


def mp3_round_trip(audio: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        wav, mp3 = Path(folder) / "in.wav", Path(folder) / "out.mp3"
        sf.write(wav, audio, SR, subtype="FLOAT")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "64k",
                        str(mp3)], check=True)
        return load_audio(mp3, SR)


def perturbations(rng: np.random.Generator) -> dict:
    silence = np.zeros(2 * SR, dtype=np.float32)
    noise = lambda: rng.standard_normal(2 * SR).astype(np.float32) * 10 ** (NOISE_DB / 20)  # noqa: E731
    return {
        "silence-2s": lambda a: pad(a, silence),
        "noise-2s": lambda a: np.concatenate([noise(), a, noise()]),
        "gain+12": lambda a: np.clip(a * 10 ** (12 / 20), -1, 1).astype(np.float32),
        "gain-12": lambda a: (a * 10 ** (-12 / 20)).astype(np.float32),
        "quiet-48": lambda a: (a / np.abs(a).max() * 10 ** (-48 / 20)).astype(np.float32),
        "tel-8k": band_limit,
        "mp3": mp3_round_trip,
        **{f"snr-{snr}": (lambda a, snr=snr: add_noise(a, snr, rng)) for snr in (20, 10, 5)},
    }


def every_nth(items: list, count: int) -> list:
    return items[:: max(1, len(items) // count)][:count]


def fold_jobs(run: Path, clips_per_fold: int, only: list[str] | None) -> list[tuple[Path, list]]:
    """(fold model, its test clips) for every fold (or the `only` ones) of a run saved with --save_fold_models."""
    results = results_file.read(run)
    clips = run_clips(results)
    jobs = []
    for fold in results["runs"][0]["folds"]:
        if only and fold["name"] not in only:
            continue
        speakers = set(fold["test_speakers"])
        test = [c for c in clips if c.speaker in speakers]
        jobs.append((fold_model(run, results, fold["name"]), every_nth(test, clips_per_fold)))
    return jobs


def evaluate(jobs, rng, detector: str | None = None, only: list[str] | None = None) -> dict:
    """Label changes and UA per perturbation, and the clips a perturbation got refused on (a refused clip counts as
    wrong for UA and is left out of the label changes)."""
    changes = {name: [] for name in perturbations(rng) if not only or name in only}
    predicted = {"original": [], **{name: [] for name in changes}}
    truth, refused = [], {name: 0 for name in changes}
    for model, clips in jobs:
        predictor = EmotionPredictor.from_pretrained(model)
        if detector:  # the model's own preparation, with another detector
            prepared = replace(predictor.preparation, speech_detector=Detector(detector).to_dict())
            predictor.feature_extractor.speech_preparation = prepared.to_dict()
        for clip in tqdm(clips, desc=model.parent.name, unit="clip"):
            audio = load_audio(clip.path, SR)
            top = lambda a: max((s := predictor.classify_batch([a])[0]), key=s.get)  # noqa: E731
            original = top(audio)
            truth.append(clip.label)
            predicted["original"].append(original)
            for name, perturb in perturbations(rng).items():
                if name not in changes:
                    continue
                try:
                    label = top(perturb(audio))
                except ValueError:
                    refused[name] += 1
                    label = None
                else:
                    changes[name].append(label != original)
                predicted[name].append(label)
    return {"clips": len(truth),
            "ua": {name: unweighted_accuracy(truth, labels) for name, labels in predicted.items()},
            "label_changed": {name: float(np.mean(values)) if values else None for name, values in changes.items()},
            "refused": refused}


def unweighted_accuracy(truth: list[str], predicted: list[str | None]) -> float:
    """UA as every result of the project measures it (ser/reporting/ser_metrics: mean recall over the true classes); a
    refused clip (None) counts as a class of its own, so it is a miss."""
    names = sorted(set(truth) | {label for label in predicted if label}) + [REFUSED]
    index = {name: i for i, name in enumerate(names)}
    return classification_metrics([index[label] for label in truth], [index[label or REFUSED] for label in predicted],
                                  len(names))["ua"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="train_ser.py output folders with fold models")
    parser.add_argument("--model", type=Path, help="one saved model, tested on --corpus")
    parser.add_argument("--corpus", help="with --model: a corpus it was not trained on (emodb, ravdess, emovo)")
    parser.add_argument("--clips-per-fold", type=int, default=30)
    parser.add_argument("--only-folds", nargs="+", help="fold names, e.g. speaker-03 speaker-08 (default: all)")
    parser.add_argument("--name", help="results file name (default: from the run or model folder)")
    parser.add_argument("--perturbations", nargs="+", choices=list(perturbations(None)), metavar="NAME",
                        help="only these perturbations (default: all), e.g. noise-2s silence-2s")
    parser.add_argument("--detector", choices=DETECTORS, help="serve with this speech detector instead of the "
                        "model's own (the old-and-new comparison)")
    args = parser.parse_args()
    if bool(args.model) == bool(args.runs) or bool(args.model) != bool(args.corpus):
        parser.error("give run folders, or --model with --corpus")
    rng = np.random.default_rng(0)
    table = {}
    if args.model:
        labels = set(EmotionPredictor.from_pretrained(args.model).labels)
        clips = [c for c in load_corpus(args.corpus, DATA / args.corpus) if c.label in labels]
        table[f"{args.model.name} on {args.corpus}"] = evaluate([(args.model, every_nth(clips, args.clips_per_fold))],
                                                                 rng, args.detector, args.perturbations)
    for run in args.runs:
        table[run.name] = evaluate(fold_jobs(run, args.clips_per_fold, args.only_folds), rng, args.detector,
                                   args.perturbations)
    names = [name for name in perturbations(rng) if not args.perturbations or name in args.perturbations]
    print("Label changes\n\n| model | detector | clips | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for key, row in table.items():
        cells = [("-" if row["label_changed"][n] is None else f"{row['label_changed'][n]:.1%}")
                 + (f" ({row['refused'][n]} refused)" if row["refused"][n] else "") for n in names]
        print(f"| {key} | {args.detector or 'its own'} | {row['clips']} | " + " | ".join(cells) + " |")
    print("\nUA\n\n| model | detector | original | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for key, row in table.items():
        print(f"| {key} | {args.detector or 'its own'} | " + " | ".join(f"{row['ua'][n]:.3f}" for n in row["ua"]) + " |")
    default_name = "-".join(table) + (f"-{args.detector}" if args.detector else "")
    write_result(f"robustness-{args.name or default_name}".replace(" ", "_"), table)


if __name__ == "__main__":
    main()
