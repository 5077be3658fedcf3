"""The spec's metrics in numpy, for what scores models outside TFMA: tuning trials and the baselines.

Each follows the definition TFMA uses for the same name (TFMA's AUCs interpolate over 10,000
thresholds, so they agree to about 1e-3, not exactly). Binary metrics are of the positive class,
`positive` in the label vocabulary (lamina.spec.EvaluationSpec.positive_index).
"""

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from lamina.models.tfma_metrics import expected_calibration_error, r_squared


def _confusion(labels, probs, threshold):
    y = np.asarray(labels) == 1
    predicted = probs >= threshold
    return (np.sum(predicted & y), np.sum(predicted & ~y), np.sum(~predicted & y), np.sum(~predicted & ~y))


def _ratio(a, b) -> float:
    return float(a / b) if b else float("nan")


def class_recalls(labels, probs) -> np.ndarray:
    """Recall of every class (NaN for a class absent from `labels`)."""
    labels = np.asarray(labels)
    predicted = np.argmax(probs, axis=1)
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        mask = labels == c
        if mask.any():
            out[c] = float(np.mean(predicted[mask] == c))
    return out


def _auc(labels, probs) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels) == 1
    return float(roc_auc_score(y, probs)) if 0 < y.sum() < len(y) else float("nan")


def _pr_auc(labels, probs) -> float:
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels) == 1
    return float(average_precision_score(y, probs)) if y.any() else float("nan")


CLASSIFICATION: Dict[str, Callable] = {
    "accuracy": lambda y, p, t: float(np.mean(np.argmax(p, axis=1) == y)),
    "crossentropy": lambda y, p, t: float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))),
    "auc": lambda y, p, t: _auc(y, p),
    "pr_auc": lambda y, p, t: _pr_auc(y, p),
    "precision": lambda y, p, t: (lambda tp, fp, fn, tn: _ratio(tp, tp + fp))(*_confusion(y, p, t)),
    "recall": lambda y, p, t: (lambda tp, fp, fn, tn: _ratio(tp, tp + fn))(*_confusion(y, p, t)),
    "tpr": lambda y, p, t: (lambda tp, fp, fn, tn: _ratio(tp, tp + fn))(*_confusion(y, p, t)),
    "fpr": lambda y, p, t: (lambda tp, fp, fn, tn: _ratio(fp, fp + tn))(*_confusion(y, p, t)),
    "ece": lambda y, p, t: expected_calibration_error(np.asarray(y) == 1, p),
    "class_recall": lambda y, p, t: float(np.nanmin(class_recalls(y, p))),
}
REGRESSION: Dict[str, Callable] = {
    "mse": lambda y, p: float(np.mean((y - p) ** 2)),
    "mae": lambda y, p: float(np.mean(np.abs(y - p))),
    "rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
    "r2": lambda y, p: r_squared(y, p),
}


BINARY = ("auc", "pr_auc", "precision", "recall", "tpr", "fpr", "ece")


def compute(task: str, metrics: Sequence[str], labels, predictions, decision_threshold: float = 0.5,
            positive: int = 1) -> Dict[str, float]:
    """{metric: value} for `predictions`: class probabilities [n, k] (classification) or values [n].

    The binary metrics see the label as `label == positive` and the score as the probability of `positive`.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions, np.float64)
    if task == "classification":
        labels = labels.astype(np.int64).ravel()
        out = {}
        for m in metrics:
            if m in BINARY:
                out[m] = CLASSIFICATION[m]((labels == positive).astype(np.int64), predictions[:, positive],
                                           decision_threshold)
            else:
                out[m] = CLASSIFICATION[m](labels, predictions, decision_threshold)
        return out
    labels = labels.astype(np.float64).ravel()
    return {m: REGRESSION[m](labels, predictions.ravel()) for m in metrics}


def resampled_auc(labels, scores, samples: np.ndarray) -> np.ndarray:
    """The AUC of each resample: `samples` is [resamples, rows] of indices into `labels` (1 positive, else 0)
    and `scores`. Equal to roc_auc_score(labels[rows], scores[rows]) for each row of `samples`: a tie between a
    positive and a negative counts one half; NaN where a resample holds one class. One pass for all resamples:
    each resample is a count per original row, and the rows are sorted once."""
    labels = np.asarray(labels).ravel() == 1
    scores = np.asarray(scores, np.float64).ravel()
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # a group of tied scores each
    rank = np.empty(len(scores), np.int64)
    rank[order] = np.arange(len(scores))  # each row's place in the sorted order
    sorted_labels = labels[order]
    out = np.empty(len(samples))
    for at in range(0, len(samples), 32):  # 32 resamples at a time: memory of 32 x rows counts
        chunk = np.asarray(samples[at:at + 32])
        cells = (np.arange(len(chunk))[:, None] * len(scores) + rank[chunk]).ravel()
        counts = np.bincount(cells, minlength=len(chunk) * len(scores)).reshape(len(chunk), len(scores)).astype(float)
        positive = np.add.reduceat(counts * sorted_labels, starts, axis=1)
        negative = np.add.reduceat(counts * ~sorted_labels, starts, axis=1)
        below = np.cumsum(negative, axis=1) - negative
        pairs = positive.sum(axis=1) * negative.sum(axis=1)
        wins = np.sum(positive * (below + 0.5 * negative), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[at:at + 32] = np.where(pairs > 0, wins / pairs, np.nan)
    return out


def resampled(task: str, metric: str, labels, predictions, samples: np.ndarray, decision_threshold: float = 0.5,
              positive: int = 1) -> np.ndarray:
    """`compute`'s `metric` on each resample (`samples`: [resamples, rows] of indices), the AUC in one pass
    (`resampled_auc`), the others one resample at a time."""
    labels = np.asarray(labels)
    if task == "classification" and metric == "auc":
        return resampled_auc(labels.astype(np.int64).ravel() == positive,
                             np.asarray(predictions, np.float64)[:, positive], samples)
    return np.array([compute(task, [metric], labels[rows], np.asarray(predictions)[rows], decision_threshold,
                             positive)[metric] for rows in samples])


def better(metric: str, a: float, b: float, direction: Optional[str] = None) -> bool:
    """Whether `a` beats `b` on `metric`."""
    from lamina.spec import higher_is_better

    up = (direction == "max") if direction else higher_is_better(metric)
    return a > b if up else a < b
