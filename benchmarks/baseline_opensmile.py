"""Classical baseline: 88 eGeMAPSv02 functionals (openSMILE) + RBF SVM, on the folds train_ser.py uses.

    python benchmarks/baseline_opensmile.py                    # Emo-DB, RAVDESS and EMOVO (~5 min)
    python benchmarks/baseline_opensmile.py --corpus emovo     # one corpus
    python benchmarks/baseline_opensmile.py --quick            # the first 3 folds' speakers of each corpus, a smoke run
    python benchmarks/baseline_opensmile.py --loco             # leave-one-corpus-out on the 6 shared emotions

Each corpus is read and split exactly as `train_ser.py --config configs/<corpus>.yaml` does: corpus, data_root,
labels, protocol, num_folds, fold_seed and split_file come from that config and go through the same loader and
`ser.data.splits.make_folds` call (Emo-DB and EMOVO leave-one-speaker-out, 10 and 6 folds; RAVDESS speaker_kfold,
6 folds of 4 consecutive actors).

SVC(C=1, kernel="rbf", class_weight="balanced") after a StandardScaler fitted on the training fold, with and
without per-speaker z-normalisation of the features (each speaker, the test speaker included, normalised with the
mean/std of its own clips: unlabelled audio). Reports WA / UA / macro-F1 pooled over all clips and mean ± std
over folds, and the seconds per clip of feature extraction. Needs `pip install opensmile` (in requirements.txt; the
wheel ships the SMILExtract binary; it runs offline).

`--corpus all` writes results/baseline_opensmile.json (one entry per corpus under "corpora"); a single corpus
writes results/baseline_opensmile-<corpus>.json, so it never overwrites the all-corpora result.

`--loco` (leave-one-corpus-out): the three corpora cut to the emotions all of them share (angry, disgust, fear,
happy, neutral, sad; chance UA 1/6); for each corpus, the same SVM trained on the other two and tested on it. Three
feature normalisations: none (only the StandardScaler fitted on the training clips), per-corpus z-norm (each corpus
with its own mean/std) and per-speaker z-norm. Both z-norms take their statistics from all of a corpus's or
speaker's clips, whatever their emotion, the held-out corpus included: transductive but label-free. Features are
extracted once per corpus and shared by the three folds. Writes results/baseline_opensmile_loco.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml

from _common import ROOT, median, table, write_result
from ser.data import corpora
from ser.data import splits
from ser.core.audio import SAMPLING_RATE, load_audio
from ser.reporting.metrics import classification_metrics, summarize_folds

CORPORA = ("emodb", "ravdess", "emovo")
DISPLAY = {"emodb": "Emo-DB", "ravdess": "RAVDESS", "emovo": "EMOVO"}
QUICK_FOLDS = 3
LOCO_QUICK_SPEAKERS = 2

# Pooled metrics of the same baseline measured by a colleague on these copies (../shared/data/README.md).
REFERENCE = {
    "emodb": {"none": {"wa": 0.667, "ua": 0.652, "macro_f1": 0.654},
              "per-speaker z-norm": {"wa": 0.798, "ua": 0.787, "macro_f1": 0.785}},
    "emovo": {"none": {"wa": 0.306, "ua": 0.306, "macro_f1": 0.292},
              "per-speaker z-norm": {"wa": 0.434, "ua": 0.434, "macro_f1": 0.430}},
}


def read_config(corpus: str) -> dict:
    """The data and protocol settings of configs/<corpus>.yaml, with train_ser.py's defaults."""
    config = yaml.safe_load((ROOT / "configs" / f"{corpus}.yaml").read_text()) or {}
    data_root = Path(config["data_root"]) if config.get("data_root") else corpora.corpus_dir(config["corpus"])
    split_file = config.get("split_file")
    return {
        "config": f"configs/{corpus}.yaml",
        "corpus": config["corpus"],
        "data_root": str(data_root if data_root.is_absolute() else ROOT / data_root),  # else under --data_dir's default
        "speaker_regex": config.get("speaker_regex"),
        "labels": config.get("labels"),
        "protocol": config.get("protocol", "loso"),
        "num_folds": config.get("num_folds"),
        "fold_seed": config.get("fold_seed"),
        "split_file": str(ROOT / split_file) if split_file and not Path(split_file).is_absolute() else split_file,
    }


def load_clips(cfg: dict, data_root: str | None = None) -> list[corpora.Clip]:
    """As train_ser.read_corpus, without decoding the audio."""
    options = {"speaker_regex": cfg["speaker_regex"]} if cfg["speaker_regex"] else {}
    clips = corpora.load_corpus(cfg["corpus"], data_root or cfg["data_root"], **options)
    if cfg["labels"]:
        clips = corpora.select_labels(clips, cfg["labels"])
    return clips


def make_folds(clips: list[corpora.Clip], cfg: dict, k: int | None = None):
    """As train_ser.main: splits.make_folds with the config's protocol, num_folds, fold_seed and split_file."""
    return splits.make_folds(clips, cfg["protocol"], k=k or cfg["num_folds"], seed=cfg["fold_seed"],
                             split_file=cfg["split_file"])


def extract(paths: list[str]) -> tuple[np.ndarray, list[float], float]:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    rows, seconds, audio_seconds = [], [], 0.0
    for path in paths:
        audio = load_audio(path)
        audio_seconds += len(audio) / SAMPLING_RATE
        start = time.perf_counter()
        rows.append(smile.process_signal(audio, SAMPLING_RATE).to_numpy()[0])
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
        results.append({"name": fold.name, "test_speakers": fold.test_speakers, "n_test": len(fold.test), **metrics,
                        "y_true": y[fold.test].tolist(), "y_pred": pred.tolist()})
    return {"folds": results, "summary": summarize_folds(results, num_labels)}


def run_corpus(corpus: str, quick: bool, data_root: str | None) -> dict:
    cfg = read_config(corpus)
    clips = load_clips(cfg, data_root)
    folds, protocol = make_folds(clips, cfg)
    if quick:
        keep = {s for fold in folds[:QUICK_FOLDS] for s in fold.test_speakers}
        clips = [c for c in clips if c.speaker in keep]
        k = min(QUICK_FOLDS, cfg["num_folds"]) if cfg["num_folds"] else None
        folds, protocol = make_folds(clips, cfg, k)
    names = sorted({c.label for c in clips})
    y = np.array([names.index(c.label) for c in clips])
    print(f"{DISPLAY[corpus]}: {len(clips)} clips, {len(names)} emotions, {protocol['description']} "
          f"({len(folds)} folds, from {cfg['config']}): " + ", ".join(
              "+".join(fold.test_speakers) for fold in folds))

    features, seconds, audio_seconds = extract([c.path for c in clips])
    print(f"eGeMAPSv02 functionals: {features.shape[1]} per clip, {median(seconds):.4f} s/clip median, "
          f"{sum(seconds) / len(seconds):.4f} s/clip mean, real-time factor {sum(seconds) / audio_seconds:.4f}")

    variants = {"none": features, "per-speaker z-norm": speaker_znorm(features, [c.speaker for c in clips])}
    rows, out = [], {}
    for variant, x in variants.items():
        result = evaluate(x, y, folds, len(names))
        s = result["summary"]
        out[variant] = result
        rows.append({"corpus": DISPLAY[corpus], "speaker normalisation": variant,
                     **{f"pooled {k}": s["pooled"][k] for k in ("wa", "ua", "macro_f1")},
                     **{f"fold {k}": f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in ("wa", "ua", "macro_f1")}})
    return {
        "config": {key: value for key, value in cfg.items() if key != "data_root"},
        "data_root": data_root or cfg["data_root"],
        "protocol": {**protocol, "fold_seed": cfg["fold_seed"],
                     "test_speakers": [fold.test_speakers for fold in folds]},
        "clips": len(clips), "speakers": len({c.speaker for c in clips}), "labels": names, "folds": len(folds),
        "features": int(features.shape[1]),
        "extraction": {"seconds_per_clip_median": median(seconds), "seconds_per_clip_mean": float(np.mean(seconds)),
                       "audio_seconds": audio_seconds, "real_time_factor": sum(seconds) / audio_seconds},
        "reference_on_this_copy": REFERENCE.get(corpus),
        "table": rows, "results": out,
    }


def loco_features(quick: bool) -> dict:
    """Every clip of each corpus (all its emotions, for the normalisation statistics), extracted once."""
    data = {}
    for corpus in CORPORA:
        cfg = read_config(corpus)
        clips = load_clips(cfg)
        if quick:  # a smoke run: the first LOCO_QUICK_SPEAKERS speakers of each corpus
            keep = sorted({c.speaker for c in clips}, key=splits.speaker_sort_key)[:LOCO_QUICK_SPEAKERS]
            clips = [c for c in clips if c.speaker in keep]
        features, seconds, audio_seconds = extract([c.path for c in clips])
        print(f"{DISPLAY[corpus]}: {len(clips)} clips extracted, {median(seconds):.4f} s/clip median")
        data[corpus] = {"clips": clips, "features": features, "seconds_per_clip_median": median(seconds),
                        "audio_seconds": audio_seconds, "config": cfg["config"]}
    return data


def loco_variants(data: dict) -> tuple[dict, list[str], list[corpora.Clip]]:
    """The three normalisations of all clips stacked, computed before any clip is dropped or split."""
    clips = [c for corpus in CORPORA for c in data[corpus]["clips"]]
    features = np.vstack([data[corpus]["features"] for corpus in CORPORA])
    corpus_of = [corpus for corpus in CORPORA for _ in data[corpus]["clips"]]
    # speaker_znorm z-normalises any grouping; speaker ids repeat across corpora ("03" is in Emo-DB and RAVDESS),
    # hence the corpus prefix.
    variants = {"none": features,
                "per-corpus z-norm": speaker_znorm(features, corpus_of),
                "per-speaker z-norm": speaker_znorm(features, [f"{k}/{c.speaker}" for k, c in zip(corpus_of, clips)])}
    return variants, corpus_of, clips


def loco_fold(held_out: str, corpus_of: np.ndarray, clips: list[corpora.Clip]) -> splits.Fold:
    test = np.flatnonzero(corpus_of == held_out)
    return splits.Fold(name=f"held-out {held_out}", train=np.flatnonzero(corpus_of != held_out).tolist(),
                       test=test.tolist(), test_speakers=sorted({clips[i].speaker for i in test}))


def run_loco(quick: bool) -> dict:
    data = loco_features(quick)
    variants, corpus_of, clips = loco_variants(data)
    shared = sorted(set.intersection(*({c.label for c in data[k]["clips"]} for k in CORPORA)))
    # The statistics above saw every clip; only now are the emotions some corpus lacks dropped.
    keep = np.flatnonzero([c.label in shared for c in clips])
    clips, corpus_of = [clips[i] for i in keep], np.array(corpus_of)[keep]
    y = np.array([shared.index(c.label) for c in clips])
    print(f"shared emotions: {', '.join(shared)} ({len(clips)} clips)")

    rows, out = [], {}
    for variant, x in variants.items():
        out[variant] = {}
        for held_out in CORPORA:
            fold = loco_fold(held_out, corpus_of, clips)
            result = evaluate(x[keep], y, [fold], len(shared))["folds"][0]
            out[variant][held_out] = result
            rows.append({"held-out corpus": DISPLAY[held_out], "normalisation": variant,
                         "train clips": len(fold.train), "test clips": len(fold.test),
                         **{k: result[k] for k in ("ua", "wa", "macro_f1")}})
        mean = {k: float(np.mean([out[variant][c][k] for c in CORPORA])) for k in ("ua", "wa", "macro_f1")}
        rows.append({"held-out corpus": "mean of 3", "normalisation": variant, **mean})
    corpora_info = {k: {"config": d["config"], "clips_extracted": len(d["clips"]),
                        "clips_tested": int((corpus_of == k).sum()),
                        "speakers": len({c.speaker for c in d["clips"]}),
                        "seconds_per_clip_median": d["seconds_per_clip_median"], "audio_seconds": d["audio_seconds"]}
                    for k, d in data.items()}
    return {"labels": shared, "chance_ua": 1 / len(shared), "corpora": corpora_info, "table": rows, "results": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=[*CORPORA, "all"], default="all")
    parser.add_argument("--data-root", help="override the config's data_root (one corpus only)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only the speakers of the first {QUICK_FOLDS} folds of each corpus, re-split the same way")
    parser.add_argument("--loco", action="store_true",
                        help="leave-one-corpus-out over all three corpora, on the emotions they share")
    args = parser.parse_args()
    if args.loco:
        if args.corpus != "all" or args.data_root:
            parser.error("--loco uses the three corpora from their configs (no --corpus, no --data-root)")
        return main_loco(args.quick)
    selected = list(CORPORA) if args.corpus == "all" else [args.corpus]
    if args.data_root and len(selected) > 1:
        parser.error("--data-root needs a single --corpus")

    entries = {}
    for corpus in selected:
        entries[corpus] = run_corpus(corpus, args.quick, args.data_root)
        print()
    rows = [row for entry in entries.values() for row in entry["table"]]
    cols = ["corpus", "speaker normalisation", "pooled wa", "pooled ua", "pooled macro_f1",
            "fold wa", "fold ua", "fold macro_f1"]
    print(table(rows, cols, {c: ".3f" for c in cols}))
    name = "baseline_opensmile" if args.corpus == "all" else f"baseline_opensmile-{args.corpus}"
    write_result("baseline_opensmile", {"corpora": entries, "table": rows}, quick=args.quick, name=name)


def main_loco(quick: bool) -> None:
    entry = run_loco(quick)
    cols = ["held-out corpus", "normalisation", "train clips", "test clips", "ua", "wa", "macro_f1"]
    print(table(entry["table"], cols, {c: ".3f" for c in ("ua", "wa", "macro_f1")}))
    print(f"chance UA: {entry['chance_ua']:.3f}")
    write_result("baseline_opensmile", {"protocol": "leave-one-corpus-out", **entry}, quick=quick,
                 name="baseline_opensmile_loco")


if __name__ == "__main__":
    main()
