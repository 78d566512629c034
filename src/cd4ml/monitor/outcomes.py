"""A classifier's outcomes against what happened: confusion matrix and calibration curve.

The same two summaries are made offline (holdout rows, saved in the release's profile at training
time) and live (production rows with their actuals, in the monitoring report), so the report can
show them side by side. `y` holds class indices (the task's `encode`), `p` the (n, k) class
probabilities in the classes' order, and `decided` the class indices the service answered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Outcomes:
    """`confusion[i][j]`: rows of actual class i answered as class j. The calibration curve, over
    `CALIBRATION_BINS` equal-width bins of the predicted probability: per bin its rows, mean predicted
    probability and observed frequency (None for an empty bin). Binary: the positive class's probability
    against how often it happened; multiclass: the answered class's probability against how often it
    was right."""

    classes: list[str]
    confusion: list[list[int]]
    calibration_of: str
    bin_rows: list[int]
    predicted: list[float | None]
    observed: list[float | None]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def outcomes(classes: list[str], y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> Outcomes:
    """The confusion matrix and calibration curve of `n` rows (see the module docstring for the shapes)."""
    k = len(classes)
    y = np.asarray(y, dtype=np.int64)
    confusion = np.bincount(y * k + decided, minlength=k * k).reshape(k, k)
    if k == 2:
        score, hit, of = p[:, 1], y == 1, classes[1]
    else:
        score, hit, of = p[np.arange(len(y)), decided], y == decided, "answered class"
    bins = np.minimum((score * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    rows = np.bincount(bins, minlength=CALIBRATION_BINS)
    sums = np.bincount(bins, weights=score, minlength=CALIBRATION_BINS)
    hits = np.bincount(bins, weights=hit.astype(np.float64), minlength=CALIBRATION_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted, observed = sums / rows, hits / rows
    return Outcomes(list(classes), confusion.tolist(), of, rows.tolist(),
                    [float(v) if n else None for v, n in zip(predicted.tolist(), rows.tolist())],
                    [float(v) if n else None for v, n in zip(observed.tolist(), rows.tolist())])
