"""Classification metrics, each knowing whether lower or higher is better, and the class-prior baseline.

Every metric takes `y` (n,) class indices (0..k-1, as floats or ints), `p` (n, k) class probabilities
whose rows sum to 1, and weights `w` (n,) (ones: these metrics weigh rows equally). Thresholded
metrics score the decided classes: binary `p[:, 1] >= threshold`, multiclass the most probable class.
Binary precision, recall and f1 are the positive class's (index 1); multiclass ones are macro averages.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from cd4ml.evaluate.metrics import Metric
from cd4ml.features.transforms import KeyTable

ECE_BINS = 10
_EPS = np.finfo(np.float64).eps  # scikit-learn's log_loss clips probabilities the same way


def decide(p: np.ndarray, threshold: float) -> np.ndarray:
    """Decided class indices (n,) from probabilities (n, k)."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape[1] == 2:
        return (p[:, 1] >= threshold).astype(np.int64)
    return np.argmax(p, axis=1).astype(np.int64)


def _auc_binary(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by ranks (ties count half): the Mann-Whitney U statistic."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Binary: ROC AUC of P(class 1). Multiclass: the unweighted mean of each class's one-vs-rest AUC."""
    y = y.astype(np.int64)
    if p.shape[1] == 2:
        return _auc_binary(y == 1, p[:, 1])
    return float(np.mean([_auc_binary(y == k, p[:, k]) for k in range(p.shape[1])]))


def logloss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Mean negative log probability given to the actual class (nats)."""
    given = np.clip(p[np.arange(len(y)), y.astype(np.int64)], _EPS, 1.0)
    return float(-np.mean(np.log(given)))


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Binary: mean (P(class 1) - y)^2, as scikit-learn's brier_score_loss. Multiclass: mean over rows
    of the squared distance between the probability vector and the one-hot actual."""
    y = y.astype(np.int64)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - y) ** 2))
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Expected calibration error over `ECE_BINS` equal-width bins: the row-weighted mean of
    |mean predicted probability - observed frequency|. Binary: of P(class 1) against class 1;
    multiclass: of the top class's probability against the top class being right."""
    y = y.astype(np.int64)
    if p.shape[1] == 2:
        confidence, hit = p[:, 1], (y == 1).astype(np.float64)
    else:
        top = np.argmax(p, axis=1)
        confidence, hit = p[np.arange(len(y)), top], (top == y).astype(np.float64)
    bins = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    rows = np.bincount(bins, minlength=ECE_BINS)
    gap = np.abs(np.bincount(bins, confidence, ECE_BINS) - np.bincount(bins, hit, ECE_BINS))
    return float(gap.sum() / max(rows.sum(), 1))


def _confusion(y: np.ndarray, decided: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: rows actual class, columns decided class."""
    return np.bincount(y.astype(np.int64) * k + decided, minlength=k * k).reshape(k, k)


def _per_class(y: np.ndarray, decided: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of each class (k,); 0 where a class was never decided / never happened."""
    m = _confusion(y, decided, k)
    hits = np.diag(m).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(m.sum(axis=0) > 0, hits / m.sum(axis=0), 0.0)
        recall = np.where(m.sum(axis=1) > 0, hits / m.sum(axis=1), 0.0)
    return precision, recall


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * precision * recall / total, 0.0)


def thresholded_metrics(threshold: float) -> list[Metric]:
    """The metrics of decided classes, deciding binary rows at `threshold`."""

    def scorer(of: Callable[[np.ndarray, np.ndarray, int], float]) -> Callable[..., float]:
        def fn(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
            return of(y.astype(np.int64), decide(p, threshold), p.shape[1])
        return fn

    def pick(values: np.ndarray, k: int) -> float:  # the positive class's (binary) or the macro mean
        return float(values[1] if k == 2 else values.mean())

    def accuracy(y: np.ndarray, d: np.ndarray, k: int) -> float:
        return float(np.mean(y == d))

    def balanced_accuracy(y: np.ndarray, d: np.ndarray, k: int) -> float:
        recall = _per_class(y, d, k)[1]
        return float(recall[np.bincount(y, minlength=k) > 0].mean())

    def precision(y: np.ndarray, d: np.ndarray, k: int) -> float:
        return pick(_per_class(y, d, k)[0], k)

    def recall(y: np.ndarray, d: np.ndarray, k: int) -> float:
        return pick(_per_class(y, d, k)[1], k)

    def f1(y: np.ndarray, d: np.ndarray, k: int) -> float:
        return pick(_f1(*_per_class(y, d, k)), k)

    return [Metric(fn.__name__, scorer(fn), True) for fn in (accuracy, balanced_accuracy, precision, recall, f1)]


def classification_metrics(threshold: float) -> dict[str, Metric]:
    """Every classification metric by name, thresholded ones deciding binary rows at `threshold`."""
    probabilistic = [Metric("auc", auc, True), Metric("logloss", logloss, False), Metric("brier", brier, False),
                     Metric("ece", ece, False)]
    return {m.name: m for m in (*probabilistic, *thresholded_metrics(threshold))}


def confusion_matrix(y: np.ndarray, p: np.ndarray, threshold: float) -> np.ndarray:
    """(k, k) counts of actual class (rows) by decided class (columns)."""
    return _confusion(np.asarray(y), decide(p, threshold), np.asarray(p).shape[1])


def class_prior_baseline(train: Mapping[str, np.ndarray], y_train: np.ndarray,
                         holdout: Mapping[str, np.ndarray], group_by: list[str], k: int) -> np.ndarray:
    """Class frequencies of `y_train` (n_train,) indices per `group_by` group, looked up for holdout
    rows, shape (n_holdout, k); groups unseen in training get the overall frequencies."""
    y_train = np.asarray(y_train).astype(np.int64)
    n = len(next(iter(holdout.values())))
    prior = np.bincount(y_train, minlength=k) / max(len(y_train), 1)
    if not group_by:
        return np.tile(prior, (n, 1))
    table, inverse = KeyTable.group([np.asarray(train[c]) for c in group_by])
    groups = int(inverse.max()) + 1
    counts = np.bincount(inverse * k + y_train, minlength=groups * k).reshape(groups, k)
    freq = counts / counts.sum(axis=1, keepdims=True)
    idx, found = table.find([np.asarray(holdout[c]) for c in group_by])
    return np.where(found[:, None], freq[idx], prior)
