"""Evaluation metrics for speech emotion recognition.

SER papers report two accuracies: WA (weighted accuracy, i.e. plain accuracy,
dominated by frequent classes) and UA (unweighted average recall, every class
counts the same). Emotion corpora are imbalanced, so both are reported, plus
macro-F1, and a confusion matrix to see which emotions get mixed up.

They are computed by one `evaluate` metric module, ser/reporting/ser_metrics (shipped inside
the package as package data, so a non-editable install has it), the same script
that can be pushed to the Hub as a metric Space.
"""

import functools
import sys
import threading
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SUMMARY_KEYS = ("wa", "ua", "macro_f1")
METRIC_PATH = Path(__file__).resolve().parent / "ser_metrics"  # evaluate.load(folder) runs folder/<folder name>.py
# A loaded metric keeps its inputs between add_batch and compute: one caller at a time (the demo serves threads).
_COMPUTE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def ser_metric():
    """The metric module, loaded once per process (loading copies the script into the HF modules cache).

    keep_in_memory: no cache file and file lock on disk for every compute.
    """
    import evaluate  # here, not at the top: importing evaluate (and datasets) takes seconds

    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def metric_functions():
    """The loaded metric script as a Python module, for its plain functions (e.g. expected_calibration_error)."""
    return sys.modules[type(ser_metric()).__module__]


def classification_metrics(y_true, y_pred, num_labels):
    """WA, UA, macro-F1 and the confusion matrix as plain JSON-friendly types.

    UA averages recall only over classes present in y_true: a test speaker who
    never produced a class must not drag UA down with an undefined recall.
    Macro-F1 and the confusion matrix use every label so that folds line up.
    """
    with _COMPUTE_LOCK:
        return ser_metric().compute(predictions=y_pred, references=y_true, num_labels=num_labels)


def summarize_folds(fold_results, num_labels):
    """Mean and std over folds, plus metrics on all predictions pooled.

    The fold mean is the number papers compare; the pooled metrics and the
    pooled confusion matrix give a single picture of all test utterances.
    The std is the population std over folds (numpy default, ddof=0).
    """
    summary = {}
    for key in SUMMARY_KEYS:
        values = np.array([fold[key] for fold in fold_results], dtype=float)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std())}
    y_true = [y for fold in fold_results for y in fold["y_true"]]
    y_pred = [y for fold in fold_results for y in fold["y_pred"]]
    summary["pooled"] = classification_metrics(y_true, y_pred, num_labels)
    return summary


def _row_normalise(confusion):
    """Row-normalise so colours show per-class recall; empty rows stay zero."""
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)


def plot_confusion(confusion, labels, path, title):
    """Save a confusion-matrix PNG: colour = row %, text = count and row %.

    Uses the Agg canvas directly (no pyplot) so it works headless and does not
    touch global matplotlib state of whoever imports this module.
    """
    counts = np.asarray(confusion, dtype=int)
    rates = _row_normalise(counts)
    size = max(4.5, 0.8 * len(labels) + 2.0)
    fig = Figure(figsize=(size + 1.0, size), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates * 100, cmap="Blues", vmin=0, vmax=100)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("row % (recall)")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels=labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=labels)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def compute_metrics_fn(num_labels):
    """Build a HF Trainer `compute_metrics` that reports WA/UA/macro-F1.

    The confusion matrix is left out because Trainer logs only scalars.
    """

    def compute_metrics(eval_prediction):
        logits = eval_prediction.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        y_pred = np.asarray(logits).argmax(axis=-1)
        metrics = classification_metrics(eval_prediction.label_ids, y_pred, num_labels)
        return {key: metrics[key] for key in SUMMARY_KEYS}

    return compute_metrics
