"""What a classifier learns after its fit, from training rows the fit did not see.

When `model.calibration` is set or `decision.threshold` is `{maximize: <metric>}`, the last
`TUNING_SHARE` of the training rows by time (rows come sorted by time) are held out of the fit: the
calibration is fitted on the model's probabilities of them, then the threshold is chosen on the
(calibrated) probabilities of the same rows. The model is fitted on the earlier rows only; the
holdout is never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cd4ml.config import ProjectConfig, ThresholdChoice
from cd4ml.errors import ConfigError
from cd4ml.release import estimators
from cd4ml.task import Classification, Task

TUNING_SHARE = 0.2
MIN_TUNING_ROWS = 50
MAX_CANDIDATES = 200  # thresholds tried: the distinct probabilities, thinned to quantiles beyond this


@dataclass
class HeldOut:
    """The training rows split for tuning: the fit's (earlier) and the tuning ones (the latest)."""

    fit_X: estimators.Handover
    fit_y: np.ndarray
    tune_X: np.ndarray
    tune_y: np.ndarray


def held_out(cfg: ProjectConfig, X: estimators.Handover, y: np.ndarray) -> HeldOut | None:
    """The split, if the project tunes anything; None otherwise (the fit takes every row)."""
    if not _tunes(cfg):
        return None
    n = len(y)
    cut = n - int(round(n * TUNING_SHARE))
    if n - cut < MIN_TUNING_ROWS:
        key = "model.calibration" if cfg.model.calibration != "none" else "decision.threshold"
        raise ConfigError(f"{n - cut} training rows to tune on (the latest {TUNING_SHARE:.0%}); at least "
                          f"{MIN_TUNING_ROWS} are needed", key=key)
    matrix = X.take()
    return HeldOut(estimators.Handover(matrix[:cut]), y[:cut], matrix[cut:], y[cut:])


def tune(cfg: ProjectConfig, model: Any, held: HeldOut) -> Task:
    """Calibrate `model` (fitted on `held.fit_X`) and choose the threshold; returns the run's task."""
    if cfg.model.calibration != "none":
        estimators.calibrate(model, cfg.model.calibration, held.tune_X, held.tune_y)
    choice = cfg.decision.threshold
    if not isinstance(choice, ThresholdChoice):
        return cfg.task
    assert isinstance(cfg.task, Classification)  # the config allows a choice for binary tasks only
    return choose_threshold(cfg.task, choice.maximize, model.predict(held.tune_X), held.tune_y)


def choose_threshold(task: Classification, metric: str, p: np.ndarray, y: np.ndarray) -> Classification:
    """The binary task with the threshold on P(positive) that scores best on `metric` for rows of class
    indices `y` (n,) given probabilities `p` (n, 2); of equal scores, the one nearest 0.5."""
    candidates = np.unique(np.concatenate([p[:, 1], [0.5]]))
    if len(candidates) > MAX_CANDIDATES:
        candidates = np.unique(np.quantile(p[:, 1], np.linspace(0.0, 1.0, MAX_CANDIDATES)))
    direction = task.metric(metric)
    best, best_score = 0.5, None
    for t in sorted(candidates, key=lambda t: abs(t - 0.5)):
        score = task.with_threshold(float(t)).score([metric], y, p)[metric]
        if best_score is None or direction.worse_by(score, best_score) < 0:
            best, best_score = float(t), score
    return task.with_threshold(best)


def _tunes(cfg: ProjectConfig) -> bool:
    return cfg.model.calibration != "none" or isinstance(cfg.decision.threshold, ThresholdChoice)
