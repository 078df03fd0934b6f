"""Metrics checked against small cases that can be verified by hand."""

import numpy as np
import pytest
from transformers import EvalPrediction

from ser.metrics import classification_metrics, compute_metrics_fn, plot_confusion, summarize_folds


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
