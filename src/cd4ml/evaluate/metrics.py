"""Regression metrics, each knowing whether lower or higher is better.

All functions take 1-D float arrays of equal length n: actuals `y`,
predictions `p` and optional non-negative weights `w` (default 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _weights(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.ones_like(y, dtype=float) if w is None else np.asarray(w, dtype=float)


def rmse(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return float(np.sqrt(np.sum(w * (p - y) ** 2) / np.sum(w)))


def mae(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * np.abs(p - y)) / np.sum(w))


def r2(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    mean = np.sum(w * y) / np.sum(w)
    total = np.sum(w * (y - mean) ** 2)
    return float(1.0 - np.sum(w * (y - p) ** 2) / total) if total > 0 else float("nan")


def nwrmsle(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Normalized weighted root mean squared log error (Favorita's metric).

    Predictions below zero are scored as zero, as the competition did.
    """
    err = np.log1p(np.clip(p, 0, None)) - np.log1p(np.clip(y, 0, None))
    return float(np.sqrt(np.sum(w * err**2) / np.sum(w)))


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    greater_is_better: bool
    weighted: bool = False  # only weighted metrics use metrics.weight; the rest weigh rows equally

    def __call__(self, y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
        y = np.asarray(y, dtype=float)
        return self.fn(y, np.asarray(p, dtype=float), _weights(y, w if self.weighted else None))

    def worse_by(self, candidate: float, reference: float) -> float:
        """How much worse `candidate` is than `reference`, relative to |reference| (<= 0: not worse)."""
        delta = reference - candidate if self.greater_is_better else candidate - reference
        return delta / abs(reference) if reference else delta


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("rmse", rmse, False),
        Metric("mae", mae, False),
        Metric("r2", r2, True),
        Metric("nwrmsle", nwrmsle, False, weighted=True),
    )
}



@dataclass(frozen=True)
class Bias:
    """How far forecast totals run from actual totals on the holdout: sum of predictions / sum of actuals
    (1.0: unbiased; 0.8: totals 20% low), overall and per value of each slice column with its row count.
    NaN where the actuals sum to 0."""

    overall: float
    slices: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)  # column -> value -> (ratio, rows)

    def to_json(self) -> dict[str, object]:
        return {"overall": self.overall,
                "slices": {c: {v: {"ratio": r, "rows": n} for v, (r, n) in values.items()}
                           for c, values in self.slices.items()}}


def _ratio(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum(y))
    return float(np.sum(p)) / total if total else float("nan")


def slice_masks(batch: Mapping[str, np.ndarray], columns: list[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(column, value as text, row mask (n,)) for every value of each of `batch`'s `columns`."""
    for column in columns:
        values = np.asarray(batch[column])
        for value in np.unique(values):
            yield column, str(value), values == value


def total_bias(y: np.ndarray, p: np.ndarray, batch: Mapping[str, np.ndarray], columns: list[str]) -> Bias:
    """`Bias` of predictions `p` (n,) against actuals `y` (n,), per value of `batch`'s `columns` (each (n,))."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    slices: dict[str, dict[str, tuple[float, int]]] = {column: {} for column in columns}
    for column, value, mask in slice_masks(batch, columns):
        slices[column][value] = (_ratio(y[mask], p[mask]), int(mask.sum()))
    return Bias(_ratio(y, p), slices)
