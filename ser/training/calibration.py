"""Calibrated confidence: one temperature fitted on out-of-fold logits, and the expected calibration error (ECE).

Class-balanced losses, mixup and small training sets leave a network's softmax over- or under-confident. Dividing
the logits by one temperature T (Guo et al., "On Calibration of Modern Neural Networks", 2017) fixes most of it
without changing any prediction's top label. T is fitted on the test predictions of the folds (speakers the fold's
model never heard), stored in the saved model's config, and applied by the predictor.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from ser.reporting.metrics import metric_functions

ECE_BINS = 15
LOG_T_BOUNDS = (-3.0, 3.0)  # T between 0.05 and 20


def probabilities(logits, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def fit_temperature(logits, labels) -> float:
    """The T > 0 minimising the negative log-likelihood of `labels` under softmax(logits / T)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=-1)[np.arange(len(labels)), labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded").x))


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of predictions in each.

    Defined once, in the metric module ser/reporting/ser_metrics, which also reports it as "ece" on the Hub.
    """
    return metric_functions().expected_calibration_error(probs, labels, bins)


def calibrate(folds: list[dict]) -> dict:
    """The temperature fitted on all folds' test logits, and the ECE of those predictions before and after
    calibration. "ece_calibrated" is honest: each fold's predictions are scaled with a temperature fitted on the
    *other* folds only (folds sharing a name across seeds count as one)."""
    names = sorted({fold["name"] for fold in folds})
    logits = np.concatenate([np.asarray(fold["logits"], dtype=np.float64) for fold in folds])
    labels = np.concatenate([fold["y_true"] for fold in folds])
    calibrated = []
    for name in names:
        rest = [fold for fold in folds if fold["name"] != name] or folds  # one fold: nothing else to fit on
        t = fit_temperature(np.concatenate([fold["logits"] for fold in rest]),
                            np.concatenate([fold["y_true"] for fold in rest]))
        calibrated += [(probabilities(fold["logits"], t), fold["y_true"]) for fold in folds if fold["name"] == name]
    return {
        "method": "temperature scaling on out-of-fold logits",
        "temperature": fit_temperature(logits, labels),
        "ece_bins": ECE_BINS,
        "ece_uncalibrated": expected_calibration_error(probabilities(logits), labels),
        "ece_calibrated": expected_calibration_error(np.concatenate([p for p, _ in calibrated]),
                                                     np.concatenate([y for _, y in calibrated])),
    }
