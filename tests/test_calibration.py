"""Temperature scaling and the expected calibration error (ser/training/calibration.py) on logits whose true calibration is
known because the labels are drawn from a chosen softmax."""

import numpy as np
import pytest
from scipy.special import softmax

from ser.training.calibration import ECE_BINS, calibrate, expected_calibration_error, fit_temperature, probabilities


def draw(rng, n, classes=5, scale=3.0, temperature=1.0):
    """Logits z ~ N(0, scale^2) and labels drawn from softmax(z / temperature): the temperature that calibrates z."""
    logits = rng.normal(0.0, scale, (n, classes))
    p = softmax(logits / temperature, axis=1)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 4.0])
def test_fit_temperature_recovers_the_true_one(true_temperature):
    logits, labels = draw(np.random.default_rng(11), 3000, temperature=true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.15)
    # and it is the minimum of the negative log-likelihood
    def nll(t):
        return -np.log(probabilities(logits, t)[np.arange(len(labels)), labels]).mean()
    assert nll(fitted) <= min(nll(fitted * 0.9), nll(fitted * 1.1))


def test_ece_of_calibrated_predictions_is_small():
    logits, labels = draw(np.random.default_rng(5), 5000, scale=2.0)
    ece = expected_calibration_error(probabilities(logits), labels)
    assert 0 <= ece < 0.03
    # the same predictions with labels that ignore them: confident and right only by chance
    shuffled = np.random.default_rng(6).permutation(labels)
    assert expected_calibration_error(probabilities(logits), shuffled) > 0.3


def test_ece_of_an_overconfident_coin_flip():
    """0.99 confident everywhere, right on exactly half: one bin, |0.5 - 0.99| = 0.49."""
    n, classes = 1000, 4
    probs = np.full((n, classes), 0.01 / (classes - 1))
    predicted = np.arange(n) % classes
    probs[np.arange(n), predicted] = 0.99
    labels = np.where(np.arange(n) < n // 2, predicted, (predicted + 1) % classes)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.49)
    assert expected_calibration_error(probs, predicted) == pytest.approx(0.01)  # right every time


def test_ece_weights_bins_by_their_share():
    """Two bins: 0.95 confident and right 3 times in 4 (share 0.8), 0.55 confident and always right (share 0.2)."""
    confident = np.tile([0.95, 0.05], (800, 1))
    unsure = np.tile([0.55, 0.45], (200, 1))
    probs = np.vstack([confident, unsure])
    labels = np.concatenate([np.where(np.arange(800) % 4 == 0, 1, 0), np.zeros(200, int)])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.8 * 0.20 + 0.2 * 0.45)


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 3.7, 20.0])
def test_temperature_never_changes_the_top_label(temperature):
    logits = np.random.default_rng(2).normal(0, 4, (2000, 7))
    assert np.array_equal(probabilities(logits, temperature).argmax(axis=1), logits.argmax(axis=1))
    np.testing.assert_allclose(probabilities(logits, temperature).sum(axis=1), 1.0)


def folds_of(rng, sizes_and_factors, classes=4):
    """One fold per (name, size, factor): true logits z with labels drawn from softmax(z), stored as factor * z, so
    the fold's calibrating temperature is `factor`."""
    folds = []
    for name, size, factor in sizes_and_factors:
        logits, labels = draw(rng, size, classes, scale=1.5)
        folds.append({"name": name, "logits": (factor * logits).tolist(), "y_true": labels.tolist()})
    return folds


def stacked(folds):
    return (np.concatenate([np.asarray(fold["logits"]) for fold in folds]),
            np.concatenate([fold["y_true"] for fold in folds]))


def test_calibrate_overconfident_folds():
    folds = folds_of(np.random.default_rng(0), [(f"speaker-{i}", 800, 3.0) for i in range(5)])
    result = calibrate(folds)
    assert result["temperature"] == pytest.approx(3.0, rel=0.1)
    assert result["ece_bins"] == ECE_BINS
    logits, labels = stacked(folds)
    assert result["ece_uncalibrated"] == pytest.approx(expected_calibration_error(probabilities(logits), labels))
    assert result["ece_uncalibrated"] > 0.1
    assert result["ece_calibrated"] < 0.04
    assert result["ece_calibrated"] < result["ece_uncalibrated"] / 4


def cross_fitted_ece(folds):
    """The documented cross-fitting, step by step: each fold name's predictions scaled with the temperature fitted
    on the folds of every other name."""
    probs, labels = [], []
    for name in sorted({fold["name"] for fold in folds}):
        own = [fold for fold in folds if fold["name"] == name]
        temperature = fit_temperature(*stacked([fold for fold in folds if fold["name"] != name]))
        for fold in own:
            probs.append(probabilities(fold["logits"], temperature))
            labels.append(fold["y_true"])
    return expected_calibration_error(np.concatenate(probs), np.concatenate(labels))


def test_calibrate_uses_only_the_other_folds():
    """An over-confident fold (calibrating temperature 3) and an under-confident one (1/3): each scaled with the
    other's temperature gets worse, while one temperature fitted on both would help. An ece_calibrated that leaked
    a fold's own predictions into its temperature could not be this bad."""
    folds = folds_of(np.random.default_rng(1), [("a", 2000, 3.0), ("b", 2000, 1 / 3)])
    result = calibrate(folds)
    logits, labels = stacked(folds)
    pooled_fit = expected_calibration_error(probabilities(logits, result["temperature"]), labels)
    assert result["temperature"] == pytest.approx(fit_temperature(logits, labels))
    assert result["ece_calibrated"] == pytest.approx(cross_fitted_ece(folds))
    assert result["ece_calibrated"] > result["ece_uncalibrated"] + 0.05
    assert result["ece_calibrated"] > pooled_fit + 0.05
    for own in folds:  # the temperatures really differ: each fold's own fit is near its factor
        assert fit_temperature(*stacked([own])) == pytest.approx(3.0 if own["name"] == "a" else 1 / 3, rel=0.15)


def test_calibrate_groups_seeds_of_a_fold():
    """Folds sharing a name (the same test speakers, another seed) are held out together: fold "a" of seed 1 must
    not calibrate fold "a" of seed 0."""
    rng = np.random.default_rng(4)
    folds = folds_of(rng, [("a", 1000, 3.0), ("b", 1000, 1 / 3), ("c", 1000, 1.0)])
    folds += folds_of(rng, [("a", 1000, 3.0), ("b", 1000, 1 / 3), ("c", 1000, 1.0)])
    result = calibrate(folds)
    assert result["ece_calibrated"] == pytest.approx(cross_fitted_ece(folds))
    by_entry = []  # what holding out one entry at a time (seed-by-seed) would give instead
    for index, fold in enumerate(folds):
        temperature = fit_temperature(*stacked(folds[:index] + folds[index + 1:]))
        by_entry.append(probabilities(fold["logits"], temperature))
    _, labels = stacked(folds)
    leaky = expected_calibration_error(np.concatenate(by_entry), labels)
    assert result["ece_calibrated"] > leaky + 0.02  # holding both seeds out leaves the far-off folds to fit on


def test_calibrate_single_fold_fits_on_itself():
    folds = folds_of(np.random.default_rng(8), [("fixed", 3000, 2.0)])
    result = calibrate(folds)
    logits, labels = stacked(folds)
    assert result["temperature"] == pytest.approx(2.0, rel=0.15)
    assert result["ece_calibrated"] == pytest.approx(
        expected_calibration_error(probabilities(logits, result["temperature"]), labels))
