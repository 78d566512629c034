"""The fit: the estimator on the training matrix, then tuned on the training rows held out of it if the
project asks (calibration, decision threshold: `tuning.py`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cd4ml.config import ProjectConfig
from cd4ml.release import estimators
from cd4ml.task import Task
from cd4ml.train import tuning


def fit_model(cfg: ProjectConfig, model: Any, X: estimators.Handover, y: np.ndarray, categorical: list[int]) -> Task:
    """Fit `model` (it frees the handed-over matrix once it holds what it needs); returns the run's task,
    with the decision threshold chosen on training data if the project asks for one."""
    held = tuning.held_out(cfg, X, y)
    estimators.fit(model, held.fit_X if held else X, held.fit_y if held else y, categorical, cfg.model.algorithm)
    return tuning.tune(cfg, model, held) if held else cfg.task
