"""Speech emotion recognition metrics: WA, UA, macro-F1, the confusion matrix, and the expected calibration error.

An `evaluate` metric module. The ser-toolkit loads it by path (ser/reporting/metrics.py); pushed to the Hub as a metric
Space it loads with `evaluate.load("<user>/ser_metrics")`.
"""

import datasets
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

import evaluate


ECE_BINS = 15

_DESCRIPTION = """
Metrics for speech emotion recognition (SER). Emotion corpora are imbalanced, so SER papers report two accuracies:
WA (weighted accuracy: plain accuracy, dominated by frequent classes) and UA (unweighted accuracy: recall averaged
over classes, each counting the same). Also macro-F1, the confusion matrix, and, given the predicted probabilities,
the expected calibration error (ECE).

UA averages recall only over the classes present in the references: a test speaker who never produced a class must
not drag UA down with an undefined recall. Macro-F1 and the confusion matrix use every label 0..num_labels-1 (a
missing class scores F1 0), so that results of different folds line up.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    num_labels (`int`): Number of classes; labels are 0..num_labels-1. Required.
    probabilities (`list` of `list` of `float`, optional): One row of class probabilities per prediction. When
        given, the result also has `ece`, computed from these probabilities (their top class counts as the
        prediction) and the references.
    ece_bins (`int`, optional): Number of equal-width confidence bins of the ECE. Defaults to 15.

Returns:
    wa (`float`): Accuracy, 0 to 1.
    ua (`float`): Recall averaged over the classes present in `references`, 0 to 1.
    macro_f1 (`float`): F1 averaged over all num_labels classes (0 for a class without true or predicted items).
    confusion (`list` of `list` of `int`): num_labels x num_labels counts; row = true class, column = predicted.
    ece (`float`, only with `probabilities`): Expected calibration error, 0 to 1. Lower is better.

Examples:
    >>> ser_metrics = evaluate.load("ser/reporting/ser_metrics")  # this folder (inside the package); "<user>/ser_metrics" once on the Hub
    >>> ser_metrics.compute(predictions=[0, 0, 1, 0], references=[0, 0, 1, 1], num_labels=3)
    {'wa': 0.75, 'ua': 0.75, 'macro_f1': 0.48888888888888893, 'confusion': [[2, 0, 0], [1, 1, 0], [0, 0, 0]]}
"""

_CITATION = """
@inproceedings{schuller2009interspeech,
  title={The {INTERSPEECH} 2009 Emotion Challenge},
  author={Schuller, Bj{\\"o}rn and Steidl, Stefan and Batliner, Anton},
  booktitle={Proc. Interspeech},
  pages={312--315},
  year={2009}
}
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={Proc. ICML},
  pages={1321--1330},
  year={2017}
}
"""


def classification_scores(references, predictions, num_labels: int) -> dict:
    """WA, UA, macro-F1 and the confusion matrix as plain JSON-friendly types (floats, lists of ints)."""
    y_true = [int(y) for y in references]
    y_pred = [int(y) for y in predictions]
    labels = list(range(num_labels))
    present = sorted(set(y_true))
    return {
        "wa": float(accuracy_score(y_true, y_pred)),
        "ua": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of predictions in each."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SerMetrics(evaluate.Metric):
    # The probabilities are a keyword of compute(), not a feature: evaluate 0.4.6 takes the input columns from the
    # first of several feature configs only, so an optional third column cannot be one. A keyword also reaches
    # _compute as given (float64), where an Arrow column would round it to a declared type.
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html",
                            "https://arxiv.org/abs/1706.04599"],
        )

    def _compute(self, predictions, references, num_labels=None, probabilities=None, ece_bins=ECE_BINS):
        if num_labels is None:  # inferring it from the data would give folds confusion matrices of different sizes
            raise ValueError("ser_metrics needs num_labels, e.g. compute(..., num_labels=7)")
        scores = classification_scores(references, predictions, num_labels)
        if probabilities is not None:
            if len(probabilities) != len(references):
                raise ValueError(f"{len(probabilities)} rows of probabilities for {len(references)} references")
            scores["ece"] = expected_calibration_error(probabilities, references, ece_bins)
        return scores
