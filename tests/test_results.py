"""The results.json contract (ser/reporting/results.py): build over several seeds, validate, write/read, upgrade of the
first (one-seed) format, and the results table script. Expected numbers are computed here with sklearn and numpy
directly, not with ser.reporting.metrics."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ser.reporting import results as results_file

REPO = Path(__file__).resolve().parent.parent
LABELS = ["angry", "neutral", "sad"]
# Results written by the first format (one seed), kept as they were written by train_ser.py before --seeds existed
OLD_FILES = sorted(path.parent for path in (REPO / "tests" / "data" / "format1").glob("*/results.json"))

# Two seeds of the same two leave-one-speaker-out folds; the true labels are the same for every seed.
Y_TRUE = {"speaker-03": [0, 0, 1, 1, 2, 2, 2], "speaker-08": [0, 1, 1, 2, 2]}
Y_PRED = {
    0: {"speaker-03": [0, 1, 1, 1, 2, 0, 2], "speaker-08": [0, 1, 2, 2, 1]},
    1: {"speaker-03": [0, 0, 1, 2, 2, 2, 2], "speaker-08": [1, 1, 1, 2, 2]},
}
KEYS = ("wa", "ua", "macro_f1")


def sk_metrics(y_true, y_pred):
    """The metric definitions: UA over the classes present, macro-F1 and confusion over every label."""
    present = sorted(set(y_true))
    return {"wa": accuracy_score(y_true, y_pred),
            "ua": recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
            "macro_f1": f1_score(y_true, y_pred, labels=range(len(LABELS)), average="macro", zero_division=0),
            "confusion": confusion_matrix(y_true, y_pred, labels=range(len(LABELS))).tolist()}


def fold(name, seed):
    """A fold dict as train_ser.evaluate_fold makes it."""
    y_true, y_pred = Y_TRUE[name], Y_PRED[seed][name]
    metrics = {key: float(value) if key != "confusion" else value for key, value in sk_metrics(y_true, y_pred).items()}
    return {"name": name, "test_speakers": [name.split("-")[1]], "n_test": len(y_true), **metrics,
            "y_true": list(y_true), "y_pred": list(y_pred)}


def runs(seeds=(0, 1)):
    return [{"seed": seed, "folds": [fold(name, seed) for name in Y_TRUE]} for seed in seeds]


def build(seeds=(0, 1), **overrides):
    fields = dict(
        corpus="emodb", language="de", labels=LABELS,
        protocol={"name": "loso", "description": "leave-one-speaker-out", "speaker_independent": True, "folds": 2,
                  "fold_seed": None},
        speaker_normalisation=False, runs=runs(seeds),
        encoder={"name_or_path": "configs/encoders/small-w2vbert.json", "family": "wav2vec2-bert",
                 "pretrained": False, "parameters": 79559},
        head={"pooling": "stats", "feature_layer": "last"},
        training={"mode": "full", "epochs": 40.0, "learning_rate": 0.003, "batch_size": 16},
        code_version="abc1234", trust_remote_code=True, feature_cache=None,
    )
    return results_file.build(**{**fields, **overrides})


def pooled_predictions(seeds):
    y_true = [y for seed in seeds for name in Y_TRUE for y in Y_TRUE[name]]
    y_pred = [y for seed in seeds for name in Y_TRUE for y in Y_PRED[seed][name]]
    return y_true, y_pred


def test_build_per_seed_summaries():
    results = build()
    assert results["seeds"] == [0, 1] and [run["seed"] for run in results["runs"]] == [0, 1]
    assert results["format_version"] == results_file.FORMAT_VERSION
    for run in results["runs"]:
        seed = run["seed"]
        assert run["folds"] == [fold(name, seed) for name in Y_TRUE]
        for key in KEYS:
            values = [sk_metrics(Y_TRUE[name], Y_PRED[seed][name])[key] for name in Y_TRUE]
            assert run["summary"][key]["mean"] == pytest.approx(np.mean(values))
            assert run["summary"][key]["std"] == pytest.approx(np.std(values))
        expected = sk_metrics(*pooled_predictions([seed]))
        for key in KEYS:
            assert run["summary"]["pooled"][key] == pytest.approx(expected[key])
        assert run["summary"]["pooled"]["confusion"] == expected["confusion"]


def test_build_aggregate_over_seeds():
    results = build()
    summary = results["summary"]
    for key in KEYS:  # every fold of every seed
        values = [sk_metrics(Y_TRUE[name], Y_PRED[seed][name])[key] for seed in (0, 1) for name in Y_TRUE]
        assert summary[key]["mean"] == pytest.approx(np.mean(values))
        assert summary[key]["std"] == pytest.approx(np.std(values))
    everything = sk_metrics(*pooled_predictions([0, 1]))
    for key in KEYS:
        assert summary["pooled"][key] == pytest.approx(everything[key])
    per_seed = {seed: sk_metrics(*pooled_predictions([seed])) for seed in (0, 1)}
    assert summary["pooled"]["confusion"] == everything["confusion"]
    assert summary["pooled"]["confusion"] == (np.array(per_seed[0]["confusion"])
                                              + np.array(per_seed[1]["confusion"])).tolist()
    assert np.sum(summary["pooled"]["confusion"]) == 2 * 12
    for key in KEYS:
        values = [per_seed[0][key], per_seed[1][key]]
        assert summary["over_seeds"][key]["values"] == pytest.approx(values)
        assert summary["over_seeds"][key]["mean"] == pytest.approx(np.mean(values))
        assert summary["over_seeds"][key]["std"] == pytest.approx(abs(values[0] - values[1]) / 2)  # population std
    assert per_seed[0]["ua"] != per_seed[1]["ua"]  # the seeds differ, so the spread is not trivially zero

    headline = results_file.headline(results)
    assert headline["seeds"] == 2 and headline["folds"] == 2
    for key in KEYS:
        assert headline[key] == {"mean": summary["over_seeds"][key]["mean"], "std": summary["over_seeds"][key]["std"]}
    over_folds = results_file.over_folds(results)
    assert over_folds["n"] == 4 and over_folds["ua"] == summary["ua"]
    rows = results_file.fold_table(results)
    assert [row["name"] for row in rows] == list(Y_TRUE) and rows[0]["test_speakers"] == ["03"]
    values = [sk_metrics(Y_TRUE["speaker-08"], Y_PRED[seed]["speaker-08"])["ua"] for seed in (0, 1)]
    assert rows[1]["ua"]["values"] == pytest.approx(values) and rows[1]["ua"]["mean"] == pytest.approx(np.mean(values))
    assert [row["seed"] for row in results_file.seed_table(results)] == [0, 1]


def test_one_seed_has_zero_spread_over_seeds():
    results = build(seeds=(0,))
    headline = results_file.headline(results)
    assert headline["seeds"] == 1 and all(headline[key]["std"] == 0 for key in KEYS)
    assert headline["ua"]["mean"] == pytest.approx(sk_metrics(*pooled_predictions([0]))["ua"])


def test_extra_fields_kept_and_reserved_ones_refused():
    augmentation = {"specaugment": {"time_masks": 2}, "mixup": None}
    results = build(augmentation=augmentation, hub_model_id="org/model")
    assert results["augmentation"] == augmentation and results["hub_model_id"] == "org/model"
    with pytest.raises(ValueError, match="folds"):
        build(folds=[])
    with pytest.raises(ValueError, match="hub_model_id"):
        build(hub_model_id=3)


@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("corpus"), "missing the field corpus"),
    (lambda r: r["runs"][1]["folds"][0].pop("y_pred"), r"missing the field runs\[1\]\.folds\[0\]\.y_pred"),
    (lambda r: r["summary"]["over_seeds"].pop("ua"), r"summary\.over_seeds\.ua"),
    (lambda r: r["protocol"].pop("speaker_independent"), r"protocol\.speaker_independent"),
    (lambda r: r.__setitem__("seeds", ["0", "1"]), r"seeds\[0\] must be an integer, got a string"),
    (lambda r: r.__setitem__("speaker_normalisation", "no"), "speaker_normalisation must be a boolean"),
    (lambda r: r["runs"][0]["folds"][1].__setitem__("ua", None), r"runs\[0\]\.folds\[1\]\.ua must be a number"),
    (lambda r: r["runs"][0]["folds"][1].__setitem__("n_test", True), r"n_test must be an integer, got a boolean"),
    (lambda r: r.__setitem__("seeds", [0, 2]), "seeds"),
    (lambda r: r["runs"][1]["folds"].pop(), "same folds"),
    (lambda r: r["runs"][0]["folds"][0]["y_pred"].pop(), "n_test 7 but 7 y_true and 6 y_pred"),
    (lambda r: r.__setitem__("format_version", 99), "format_version 99"),
])
def test_validate_names_the_bad_field(change, field):
    results = copy.deepcopy(build())
    change(results)
    with pytest.raises(ValueError, match=field):
        results_file.validate(results)
    assert results_file.validate(build()) is not None


def test_write_and_read_round_trip(tmp_path):
    results = build(augmentation={"mixup": 0.2})
    path = results_file.write(results, tmp_path / "run")
    assert path == tmp_path / "run" / "results.json"
    assert path.read_text().startswith('{\n "format_version"')  # indent=1
    assert results_file.read(tmp_path / "run") == results == results_file.read(path)
    broken = copy.deepcopy(results)
    del broken["labels"]
    with pytest.raises(ValueError, match="labels"):
        results_file.write(broken, tmp_path / "bad")
    assert not (tmp_path / "bad" / "results.json").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"bad/results\.json: results\.json is missing the field labels"):
        results_file.read(tmp_path / "bad")


@pytest.mark.parametrize("folder", OLD_FILES, ids=lambda path: path.name)
def test_read_upgrades_first_format_files(folder, tmp_path):
    old = json.loads((folder / "results.json").read_text())
    assert "folds" in old and "runs" not in old  # the committed files are still in the first format
    results = results_file.read(folder)
    assert "folds" not in results and "seed" not in results
    assert results["seeds"] == [old["seed"]] and len(results["runs"]) == 1
    run = results["runs"][0]
    assert run["folds"] == old["folds"]
    for summary in (run["summary"], results["summary"]):  # one seed: the run's summary is the aggregate's
        for key in KEYS:
            assert summary[key] == pytest.approx(old["summary"][key])
            assert summary["pooled"][key] == pytest.approx(old["summary"]["pooled"][key])
        assert summary["pooled"]["confusion"] == old["summary"]["pooled"]["confusion"]
    for key in KEYS:
        over_seeds = results["summary"]["over_seeds"][key]
        assert over_seeds == {"mean": pytest.approx(old["summary"]["pooled"][key]), "std": 0.0,
                              "values": [pytest.approx(old["summary"]["pooled"][key])]}
    for key, value in old.items():
        if key not in ("seed", "folds", "summary"):
            assert results[key] == value
    headline = results_file.headline(results)
    assert headline["seeds"] == 1 and headline["folds"] == old["protocol"]["folds"] == len(old["folds"])
    assert results_file.read(results_file.write(results, tmp_path)) == results


# A mixture: the corpus of each test clip of the two folds. RAVDESS's test clips are never "sad" (label 2).
CORPUS = {"speaker-03": ["emodb", "ravdess", "emodb", "ravdess", "emodb", "emodb", "emodb"],
          "speaker-08": ["ravdess", "ravdess", "emodb", "emodb", "emodb"]}


def mixture_runs(seeds=(0, 1), corpus=CORPUS):
    return [{"seed": run["seed"], "folds": [{**fold, "corpus": list(corpus[fold["name"]])} for fold in run["folds"]]}
            for run in runs(seeds)]


def corpus_predictions(corpus, seeds):
    pairs = [(t, p) for seed in seeds for name in Y_TRUE
             for t, p, c in zip(Y_TRUE[name], Y_PRED[seed][name], CORPUS[name]) if c == corpus]
    return [t for t, _ in pairs], [p for _, p in pairs]


def test_per_corpus_summary_of_a_mixture():
    results = build(runs=mixture_runs(), corpus="emodb+ravdess", language="multilingual")
    per_corpus = results["summary"]["per_corpus"]
    assert sorted(per_corpus) == ["emodb", "ravdess"]
    for corpus, entry in per_corpus.items():
        y_true, y_pred = corpus_predictions(corpus, (0, 1))
        present = sorted(set(y_true))
        assert entry["pooled"]["ua"] == pytest.approx(recall_score(y_true, y_pred, labels=present, average="macro"))
        expected = sk_metrics(y_true, y_pred)
        for key in KEYS:
            assert entry["pooled"][key] == pytest.approx(expected[key])
        assert entry["pooled"]["confusion"] == expected["confusion"]
        per_seed = [sk_metrics(*corpus_predictions(corpus, (seed,))) for seed in (0, 1)]
        for key in KEYS:
            values = [metrics[key] for metrics in per_seed]
            assert entry["over_seeds"][key]["values"] == pytest.approx(values)
            assert entry["over_seeds"][key]["mean"] == pytest.approx(np.mean(values))
            assert entry["over_seeds"][key]["std"] == pytest.approx(np.std(values))
    # RAVDESS has no "sad" test clip: its UA averages two recalls, not three with an undefined one counted as 0
    y_true, y_pred = corpus_predictions("ravdess", (0, 1))
    assert 2 not in y_true and 2 in y_pred
    assert per_corpus["ravdess"]["pooled"]["ua"] > recall_score(y_true, y_pred, labels=[0, 1, 2], average="macro",
                                                                zero_division=0)
    # the corpora split the pooled predictions between them
    total = sum(np.array(per_corpus[corpus]["pooled"]["confusion"]) for corpus in ("emodb", "ravdess"))
    assert total.tolist() == results["summary"]["pooled"]["confusion"]

    table = results_file.per_corpus(results)
    assert table == {corpus: {key: {"mean": entry["over_seeds"][key]["mean"], "std": entry["over_seeds"][key]["std"]}
                              for key in KEYS} for corpus, entry in per_corpus.items()}
    assert table["ravdess"]["ua"]["mean"] == pytest.approx(
        np.mean([sk_metrics(*corpus_predictions("ravdess", (seed,)))["ua"] for seed in (0, 1)]))


def test_per_corpus_survives_write_and_read(tmp_path):
    results = build(runs=mixture_runs(), corpus="emodb+ravdess", language="multilingual")
    assert results_file.read(results_file.write(results, tmp_path)) == results
    assert results_file.per_corpus(results_file.read(tmp_path)) == results_file.per_corpus(results)


def test_single_corpus_has_no_per_corpus():
    for plain in (build(), build(runs=mixture_runs(corpus={name: ["emodb"] * len(y) for name, y in Y_TRUE.items()}))):
        assert "per_corpus" not in plain["summary"]
        assert results_file.per_corpus(plain) == {}


@pytest.mark.parametrize("change", ["short", "missing"])
def test_build_refuses_inconsistent_corpus_lists(change):
    mixed = mixture_runs()
    if change == "short":
        mixed[0]["folds"][0]["corpus"] = mixed[0]["folds"][0]["corpus"][:2]
    else:
        del mixed[1]["folds"][1]["corpus"]
    with pytest.raises(ValueError, match="corpus"):
        build(runs=mixed)


def test_calibration_field():
    calibration = {"method": "temperature scaling on out-of-fold logits", "temperature": 1.7, "ece_bins": 15,
                   "ece_uncalibrated": 0.12, "ece_calibrated": 0.03}
    assert build(calibration=calibration, trim_silence=True)["calibration"] == calibration
    assert build(calibration=None)["calibration"] is None
    for key in ("temperature", "ece_calibrated", "ece_bins"):
        with pytest.raises(ValueError, match=f"missing the field calibration.{key}"):
            build(calibration={name: value for name, value in calibration.items() if name != key})
    results = build(calibration=calibration)
    del results["calibration"]["temperature"]
    with pytest.raises(ValueError, match="calibration.temperature"):
        results_file.validate(results)
    with pytest.raises(ValueError, match="calibration.temperature must be a number"):
        build(calibration={**calibration, "temperature": "1.7"})
    with pytest.raises(ValueError, match="trim_silence must be a boolean"):
        build(trim_silence="yes")


def test_calibration_from_calibrate_is_valid():
    """What train_ser.py stores: ser.training.calibration.calibrate on the folds' test logits."""
    from ser.training.calibration import calibrate

    rng = np.random.default_rng(0)
    folds = [{"name": name, "y_true": Y_TRUE[name], "logits": rng.normal(0, 2, (len(Y_TRUE[name]), len(LABELS)))}
             for name in Y_TRUE]
    results = build(calibration=calibrate(folds))
    assert results_file.validate(json.loads(json.dumps(results)))["calibration"]["temperature"] > 0


def floor_ua(corpus, normalisation, labels):
    """The handcrafted floor's pooled UA as the table should print it, from the committed baseline results: only
    beside results on the same emotions (a floor on other labels compares nothing)."""
    floor = json.loads((REPO / "benchmarks" / "results" / "baseline_opensmile.json").read_text())["corpora"][corpus]
    if floor["labels"] != labels:
        return "–"
    return f"{floor['results'][normalisation]['summary']['pooled']['ua']:.3f}"


def test_results_table_script(tmp_path):
    results = build()
    results_file.write(results, tmp_path / "two-seeds")
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "results_table.py"), str(tmp_path / "two-seeds"),
         str(OLD_FILES[0] / "results.json")],
        capture_output=True, text=True, check=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    header, rule, two_seeds, old = completed.stdout.splitlines()
    assert header == ("| corpus | protocol | speaker norm. | seeds | pooled UA | pooled WA | pooled macro-F1 | "
                      "UA over folds | floor UA | results |")
    assert rule == "|---|---|---|---|---|---|---|---|---|---|"
    per_seed = [sk_metrics(*pooled_predictions([seed])) for seed in (0, 1)]
    cell = lambda values: f"{np.mean(values):.3f} ± {np.std(values):.3f}"  # noqa: E731
    fold_ua = [sk_metrics(Y_TRUE[name], Y_PRED[seed][name])["ua"] for seed in (0, 1) for name in Y_TRUE]
    cells = [c.strip() for c in two_seeds.strip("|").split("|")]
    assert cells == ["emodb", "leave-one-speaker-out (2 folds)", "no", "2",
                     *(cell([metrics[key] for metrics in per_seed]) for key in ("ua", "wa", "macro_f1")),
                     cell(fold_ua), floor_ua("emodb", "none", LABELS), f"`{tmp_path / 'two-seeds'}`"]
    old_cells = [c.strip() for c in old.strip("|").split("|")]
    assert old_cells[3] == "1" and old_cells[4].endswith("± 0.000")
    old_results = results_file.read(OLD_FILES[0])
    normalisation = "per-speaker z-norm" if old_results["speaker_normalisation"] else "none"
    assert old_cells[8] == floor_ua(old_results["corpus"], normalisation, old_results["labels"])
