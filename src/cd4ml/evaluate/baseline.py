"""The naive baseline every model must beat, and per-slice scores.

The baseline predicts, for each holdout row, the mean (model-space) target of
its group in the training period, e.g. per store x item x weekday; groups
unseen in training fall back to the overall mean.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from cd4ml.features.transforms import KeyTable

# (metric names, y, p, w) -> {name: value}; the task's metrics
Scorer = Callable[[list[str], np.ndarray, np.ndarray, "np.ndarray | None"], dict[str, float]]


def naive_baseline(train: Mapping[str, np.ndarray], y_train: np.ndarray,
                   holdout: Mapping[str, np.ndarray], group_by: list[str]) -> np.ndarray:
    """Group means of `y_train` (n_train,) looked up for holdout rows; model space, shape (n_holdout,)."""
    y_train = np.asarray(y_train, dtype=np.float64)
    n = len(next(iter(holdout.values())))
    prior = float(y_train.mean())
    if not group_by:
        return np.full(n, prior)
    table, inverse = KeyTable.group([np.asarray(train[c]) for c in group_by])
    means = np.bincount(inverse, weights=y_train) / np.bincount(inverse)
    idx, found = table.find([np.asarray(holdout[c]) for c in group_by])
    return np.where(found, means[idx], prior)


def slice_scores(batch: Mapping[str, np.ndarray], columns: list[str], score: Scorer, metrics: list[str],
                 y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> dict[str, dict[str, dict[str, float]]]:
    """{column: {value: {metric: score, "rows": n}}} for every value of each slice column, scored by `score`."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in columns:
        values = np.asarray(batch[column])
        out[column] = {}
        for value in np.unique(values):
            mask = values == value
            scores = score(metrics, y[mask], p[mask], None if w is None else w[mask])
            out[column][str(value)] = {**scores, "rows": float(mask.sum())}
    return out
