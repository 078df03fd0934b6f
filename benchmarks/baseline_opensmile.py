"""Classical baseline on Emo-DB: 88 eGeMAPSv02 functionals (openSMILE) + RBF SVM, leave-one-speaker-out.

    python benchmarks/baseline_opensmile.py            # all 535 clips, 10 folds
    python benchmarks/baseline_opensmile.py --quick    # 3 speakers only, a smoke run

SVC(C=1, kernel="rbf", class_weight="balanced") after a StandardScaler fitted on the training fold, with and
without per-speaker z-normalisation of the features (each speaker, the test speaker included, normalised with the
mean/std of its own clips: unlabelled audio). Reports WA / UA / macro-F1 pooled over all clips and mean ± std
over folds, and the seconds per clip of feature extraction. Needs `pip install opensmile` (the wheel ships the
SMILExtract binary; it runs offline).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import EMODB, median, table, write_result  # noqa: I001  (puts the repo root on sys.path)
from ser.audio import load_audio
from ser.corpora import load_emodb
from ser.metrics import classification_metrics, summarize_folds
from ser.splits import leave_one_speaker_out


def extract(paths: list[str]) -> tuple[np.ndarray, list[float], float]:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    rows, seconds, audio_seconds = [], [], 0.0
    for path in paths:
        audio = load_audio(path, 16000)
        audio_seconds += len(audio) / 16000
        start = time.perf_counter()
        rows.append(smile.process_signal(audio, 16000).to_numpy()[0])
        seconds.append(time.perf_counter() - start)
    return np.asarray(rows, dtype=np.float64), seconds, audio_seconds


def speaker_znorm(features: np.ndarray, speakers: list[str]) -> np.ndarray:
    out = features.copy()
    speakers = np.asarray(speakers)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-8)
    return out


def evaluate(features, y, folds, num_labels) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    results = []
    for fold in folds:
        clf = make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", class_weight="balanced"))
        clf.fit(features[fold.train], y[fold.train])
        pred = clf.predict(features[fold.test])
        metrics = classification_metrics(y[fold.test], pred, num_labels)
        results.append({"name": fold.name, "n_test": len(fold.test), **metrics,
                        "y_true": y[fold.test].tolist(), "y_pred": pred.tolist()})
    return {"folds": results, "summary": summarize_folds(results, num_labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(EMODB))
    parser.add_argument("--quick", action="store_true", help="3 speakers (about 150 clips), 3 folds")
    args = parser.parse_args()

    clips = load_emodb(args.data_root)
    if args.quick:
        keep = {"03", "08", "09"}
        clips = [c for c in clips if c.speaker in keep]
    names = sorted({c.label for c in clips})
    y = np.array([names.index(c.label) for c in clips])
    folds = leave_one_speaker_out(clips)
    print(f"Emo-DB: {len(clips)} clips, {len(names)} emotions, {len(folds)} leave-one-speaker-out folds")

    features, seconds, audio_seconds = extract([c.path for c in clips])
    print(f"eGeMAPSv02 functionals: {features.shape[1]} per clip, {median(seconds):.4f} s/clip median, "
          f"{sum(seconds) / len(seconds):.4f} s/clip mean, real-time factor {sum(seconds) / audio_seconds:.4f}")

    variants = {"none": features, "per-speaker z-norm": speaker_znorm(features, [c.speaker for c in clips])}
    rows, out = [], {}
    for variant, x in variants.items():
        result = evaluate(x, y, folds, len(names))
        s = result["summary"]
        out[variant] = result
        rows.append({"speaker normalisation": variant,
                     **{f"pooled {k}": s["pooled"][k] for k in ("wa", "ua", "macro_f1")},
                     **{f"fold {k}": f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in ("wa", "ua", "macro_f1")}})
    cols = ["speaker normalisation", "pooled wa", "pooled ua", "pooled macro_f1", "fold wa", "fold ua", "fold macro_f1"]
    print(table(rows, cols, {c: ".3f" for c in cols}))
    write_result("baseline_opensmile", {
        "clips": len(clips), "labels": names, "folds": len(folds), "features": int(features.shape[1]),
        "extraction": {"seconds_per_clip_median": median(seconds), "seconds_per_clip_mean": float(np.mean(seconds)),
                       "audio_seconds": audio_seconds, "real_time_factor": sum(seconds) / audio_seconds},
        "reference_on_this_copy": {"none": {"wa": 0.667, "ua": 0.652, "macro_f1": 0.654},
                                   "per-speaker z-norm": {"wa": 0.798, "ua": 0.787, "macro_f1": 0.785}},
        "table": rows, "results": out}, quick=args.quick)


if __name__ == "__main__":
    main()
