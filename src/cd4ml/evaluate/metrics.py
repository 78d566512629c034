"""Regression metrics, each knowing whether lower or higher is better.

All functions take 1-D float arrays of equal length n: actuals `y`,
predictions `p` and optional non-negative weights `w` (default 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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

