"""The naive baselines every model must beat, and per-slice scores.

The group mean predicts, for each holdout row, the mean (model-space) target of
its group in the training period, e.g. per store x item x weekday; groups
unseen in training fall back to the overall mean. A forecasting project's
history baselines predict each row from its own series' actuals some steps
back (`lagged_mean`): the last value, the same time one season back, a
rolling mean. All predict in the model's target space.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from cd4ml.evaluate.metrics import slice_masks
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


def history_lags(kind: str, horizon: int, season: int | None, window: int) -> list[int]:
    """The steps back a history baseline reads, none nearer than `horizon`: `last_value` the horizon
    itself; `seasonal_naive` the nearest whole number of seasons at or past it; `rolling_mean` the
    `window` steps ending at it."""
    if kind == "last_value":
        return [horizon]
    if kind == "seasonal_naive":
        assert season is not None  # the config gives one or refuses the kind
        return [season * -(-horizon // season)]
    if kind == "rolling_mean":
        return list(range(horizon, horizon + window))
    raise ValueError(f"unknown history baseline {kind!r}")


def lagged_mean(keys: list[np.ndarray], steps: np.ndarray, y: np.ndarray, query_keys: list[np.ndarray],
                query_steps: np.ndarray, lags: list[int]) -> np.ndarray:
    """For each query row (n_query,), the mean of its series' values `lags` steps before its step; NaN
    where none of them is known. The history: series `keys` (columns of n), `steps` (n,) and values `y`
    (n,); a step held twice by one series counts as its mean."""
    table, inverse = KeyTable.group([*keys, steps])
    values = np.bincount(inverse, weights=np.asarray(y, dtype=np.float64)) / np.bincount(inverse)
    total = np.zeros(len(query_steps))
    known = np.zeros(len(query_steps), dtype=np.int64)
    for lag in lags:
        idx, found = table.find([*query_keys, query_steps - lag])
        total[found] += values[idx[found]]
        known += found
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, total / known, np.nan)


def slice_scores(batch: Mapping[str, np.ndarray], columns: list[str], score: Scorer, metrics: list[str],
                 y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> dict[str, dict[str, dict[str, float]]]:
    """{column: {value: {metric: score, "rows": n}}} for every value of each slice column, scored by `score`."""
    out: dict[str, dict[str, dict[str, float]]] = {column: {} for column in columns}
    for column, value, mask in slice_masks(batch, columns):
        scores = score(metrics, y[mask], p[mask], None if w is None else w[mask])
        out[column][value] = {**scores, "rows": float(mask.sum())}
    return out
