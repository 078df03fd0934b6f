"""Metrics checked against small cases that can be verified by hand, and the metric module ser/reporting/ser_metrics
against scikit-learn and numpy computed here."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from transformers import EvalPrediction

from helpers import ROOT
from ser.training import calibration
from ser.reporting.metrics import (METRIC_PATH, classification_metrics, compute_metrics_fn, metric_functions, plot_confusion,
                         summarize_folds)


def test_perfect_prediction():
    y = [0, 1, 2, 2, 1]
    metrics = classification_metrics(y, y, num_labels=3)
    assert metrics["wa"] == 1.0
    assert metrics["ua"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["confusion"] == [[1, 0, 0], [0, 2, 0], [0, 0, 2]]


def test_wa_differs_from_ua_on_imbalanced_classes():
    # 8 utterances of class 0 (all right), 2 of class 1 (one right, one called 0).
    y_true = [0] * 8 + [1, 1]
    y_pred = [0] * 8 + [1, 0]
    metrics = classification_metrics(y_true, y_pred, num_labels=2)
    wa = (8 + 1) / 10
    ua = (8 / 8 + 1 / 2) / 2
    f1_class0 = 2 * 8 / (2 * 8 + 1 + 0)  # tp=8, fp=1, fn=0
    f1_class1 = 2 * 1 / (2 * 1 + 0 + 1)  # tp=1, fp=0, fn=1
    assert metrics["wa"] == pytest.approx(wa)
    assert metrics["ua"] == pytest.approx(ua)
    assert metrics["wa"] != pytest.approx(metrics["ua"])
    assert metrics["macro_f1"] == pytest.approx((f1_class0 + f1_class1) / 2)
    assert metrics["confusion"] == [[8, 0], [1, 1]]


def test_ua_ignores_classes_absent_from_y_true_but_f1_does_not():
    # Class 2 never occurs in y_true; class 1 is predicted once wrongly.
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 1, 1]
    metrics = classification_metrics(y_true, y_pred, num_labels=3)
    assert metrics["ua"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    f1_class0 = 2 * 1 / (2 * 1 + 0 + 1)
    f1_class1 = 2 * 2 / (2 * 2 + 1 + 0)
    assert metrics["macro_f1"] == pytest.approx((f1_class0 + f1_class1 + 0.0) / 3)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def make_fold(y_true, y_pred, num_labels):
    return {"y_true": y_true, "y_pred": y_pred, **classification_metrics(y_true, y_pred, num_labels)}


def test_summarize_folds_mean_std_and_pooled():
    fold_a = make_fold([0, 0, 1, 1], [0, 0, 1, 1], 2)  # wa 1.0
    fold_b = make_fold([0, 0, 1, 1], [0, 1, 0, 1], 2)  # wa 0.5
    summary = summarize_folds([fold_a, fold_b], num_labels=2)
    assert summary["wa"]["mean"] == pytest.approx(0.75)
    assert summary["wa"]["std"] == pytest.approx(0.25)  # population std of [1.0, 0.5]
    assert summary["ua"]["mean"] == pytest.approx(0.75)
    assert summary["macro_f1"]["std"] == pytest.approx(np.std([fold_a["macro_f1"], fold_b["macro_f1"]]))
    assert summary["pooled"]["wa"] == pytest.approx(6 / 8)
    assert summary["pooled"]["confusion"] == [[3, 1], [1, 3]]


def test_plot_confusion_writes_png(tmp_path):
    path = tmp_path / "confusion_matrix.png"
    plot_confusion([[5, 1, 0], [2, 3, 1], [0, 0, 0]], ["angry", "happy", "neutral"], path, "test")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) > 1000


def test_compute_metrics_fn_takes_logits():
    logits = np.array([[2.0, 0.1], [0.3, 1.0], [0.9, 0.2], [1.5, -1.0]])
    labels = np.array([0, 1, 1, 0])
    metrics = compute_metrics_fn(2)(EvalPrediction(predictions=logits, label_ids=labels))
    assert set(metrics) == {"wa", "ua", "macro_f1"}
    assert metrics["wa"] == pytest.approx(3 / 4)
    assert metrics["ua"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert all(isinstance(value, float) for value in metrics.values())


# --- the metric module against scikit-learn and numpy ----------------------------------------------------------
def sklearn_metrics(y_true, y_pred, num_labels):
    """The definitions, straight from scikit-learn: UA over the classes present, F1 over all labels."""
    labels = list(range(num_labels))
    return {
        "wa": accuracy_score(y_true, y_pred),
        "ua": recall_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def numpy_ece(probs, labels, bins):
    """ECE as sums per bin: sum_b n_b/n |acc_b - conf_b| = sum_b |correct_b - confidence_b| / n."""
    confidence = probs.max(axis=1)
    which = np.minimum(np.floor(confidence * bins).astype(int), bins - 1)
    correct = np.bincount(which, weights=probs.argmax(axis=1) == labels, minlength=bins)
    confident = np.bincount(which, weights=confidence, minlength=bins)
    return np.abs(correct - confident).sum() / len(labels)


def random_cases():
    """Labels with a class missing from the references and another never predicted, for several num_labels;
    probabilities whose top class is the prediction."""
    rng = np.random.default_rng(3)
    cases = []
    for num_labels in (2, 4, 7):
        n = int(rng.integers(30, 200))
        missing, unpredicted = num_labels - 1, 0
        y_true = rng.integers(0, num_labels - 1, n)  # never `missing`
        y_pred = rng.integers(1, num_labels, n)  # never `unpredicted`
        probs = softmax(rng.normal(0, 2, (n, num_labels)), axis=1)
        probs[np.arange(n), y_pred] += probs.max(axis=1)  # y_pred is the top class...
        probs /= probs.sum(axis=1, keepdims=True)  # ...of a probability row
        assert missing not in y_true and unpredicted not in y_pred and unpredicted in y_true
        cases.append({"num_labels": num_labels, "y_true": y_true.tolist(), "y_pred": y_pred.tolist(),
                      "probs": probs.tolist()})
    return cases


LOAD_ELSEWHERE = """
import json, sys
import evaluate
from ser.reporting.metrics import classification_metrics
metric = evaluate.load(sys.argv[1])
out = []
for case in json.load(sys.stdin):
    out.append({"module": metric.compute(predictions=case["y_pred"], references=case["y_true"],
                                         num_labels=case["num_labels"], probabilities=case["probs"]),
                "toolkit": classification_metrics(case["y_true"], case["y_pred"], case["num_labels"])})
print(json.dumps(out))
"""


def assert_matches(metrics, expected):
    assert metrics["confusion"] == expected["confusion"]
    for key in ("wa", "ua", "macro_f1"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12)


def test_module_loaded_by_path_elsewhere_and_offline_matches_sklearn(tmp_path):
    """A fresh process in another directory, offline, with an empty modules cache: the module loads by path and
    ser.reporting.metrics finds it relative to the repository (editable install, no PYTHONPATH)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    cases = random_cases()
    done = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(METRIC_PATH)], input=json.dumps(cases),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for case, result in zip(cases, json.loads(done.stdout), strict=True):
        expected = sklearn_metrics(case["y_true"], case["y_pred"], case["num_labels"])
        assert result["toolkit"] == {key: result["module"][key] for key in result["toolkit"]}
        assert_matches(result["module"], expected)
        assert result["module"]["ece"] == pytest.approx(
            numpy_ece(np.array(case["probs"]), np.array(case["y_true"]), calibration.ECE_BINS))


def test_metric_module_is_inside_the_package():
    assert METRIC_PATH == ROOT / "ser" / "reporting" / "ser_metrics"
    assert (METRIC_PATH / "ser_metrics.py").is_file() and (METRIC_PATH / "README.md").is_file()


@pytest.mark.parametrize("as_array", [False, True])
def test_classification_metrics_match_sklearn_as_plain_json_types(as_array):
    for case in random_cases():
        y_true, y_pred = case["y_true"], case["y_pred"]
        if as_array:
            y_true, y_pred = np.array(y_true), np.array(y_pred)
        metrics = classification_metrics(y_true, y_pred, case["num_labels"])
        assert_matches(metrics, sklearn_metrics(case["y_true"], case["y_pred"], case["num_labels"]))
        assert all(type(metrics[key]) is float for key in ("wa", "ua", "macro_f1"))
        assert all(type(count) is int for row in metrics["confusion"] for count in row)
        assert json.loads(json.dumps(metrics)) == metrics


def test_ece_matches_numpy_and_calibration_uses_the_module():
    rng = np.random.default_rng(9)
    probs = softmax(rng.normal(0, 3, (2000, 5)), axis=1)
    probs[:100] = np.eye(5)[rng.integers(0, 5, 100)]  # confidence exactly 1: the top bin's closed right edge
    labels = rng.integers(0, 5, 2000)
    for bins in (calibration.ECE_BINS, 10):
        expected = numpy_ece(probs, labels, bins)
        assert calibration.expected_calibration_error(probs, labels, bins) == pytest.approx(expected, abs=1e-12)
        assert metric_functions().expected_calibration_error(probs, labels, bins) == pytest.approx(expected, abs=1e-12)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(
        numpy_ece(probs, labels, calibration.ECE_BINS), abs=1e-12)
    assert metric_functions().ECE_BINS == calibration.ECE_BINS  # the module's default gives the toolkit's numbers


def test_compute_metrics_fn_takes_a_tuple_of_logits():
    """A model returning more than logits gives Trainer a tuple; the first entry holds the logits."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1, (64, 4))
    labels = rng.integers(0, 4, 64)
    hidden = rng.normal(0, 1, (64, 8))
    metrics = compute_metrics_fn(4)(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    expected = sklearn_metrics(labels.tolist(), logits.argmax(axis=1).tolist(), 4)
    assert set(metrics) == {"wa", "ua", "macro_f1"}
    for key in metrics:
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12)
        assert type(metrics[key]) is float
