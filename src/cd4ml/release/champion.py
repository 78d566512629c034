"""The current champion re-scored on a run's holdout, with its own packaged code and decision threshold:
the gate's evidence about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import ProjectConfig
from cd4ml.errors import ReleaseError
from cd4ml.gate.checks import Evidence, scored_metrics
from cd4ml.release.package import Release
from cd4ml.release.registry import Registry
from cd4ml.task import Task


def score_champion(ev: Evidence, registry: Registry, version: str, cache: Path, hold_df: pd.DataFrame,
                   derived_hold: dict[str, np.ndarray], cfg: ProjectConfig, w: np.ndarray | None,
                   y: np.ndarray, history: dict[str, np.ndarray] | None) -> None:
    """Re-score champion `version` on this run's holdout (`y`: its encoded target) into `ev`. `history`: the
    run's version's series, time and target columns, for a champion with history features."""
    ev.champion_version = version
    try:
        champ: Release = registry.load(version, cache, threads=0)
        if _problem(champ.task) != _problem(ev.task):
            raise ReleaseError(f"it predicts {_problem(champ.task)}, this run {_problem(ev.task)}")
        pred = champ.predict_frame(hold_df, history)
    except Exception as exc:  # any failure of an old release is a verdict, not a crash
        ev.champion_error = f"{type(exc).__name__}: {exc}"
        return
    ev.champion = champ.task.score(scored_metrics(cfg), y, pred, w)
    ev.champion_slices = champ.task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y, pred, w)


def _problem(task: Task) -> dict[str, Any]:
    """What a release predicts: its task and classes (a decision threshold aside)."""
    return {k: v for k, v in task.spec().items() if k != "threshold"}
