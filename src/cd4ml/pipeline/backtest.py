"""Rolling-origin backtest (`split.backtest`): the run's training and scoring again on the pinned data version
without its latest steps, once per fold, so a model is judged on several recent periods, not one."""

from __future__ import annotations

from cd4ml.config import PROJECT_FILE, Project
from cd4ml.gate.checks import FoldScores
from cd4ml.pipeline.stages import Evaluation, Pinned, Prepared, StageClock, evaluate, fit, prepare
from cd4ml.release import estimators


def fold_scores(steps_back: int, data: Prepared, ev: Evaluation, time_column: str) -> FoldScores:
    """One fold's holdout scores: its model's and each baseline's metrics, and the holdout's time span."""
    times = data.hold[time_column]
    text = lambda t: str(t).removesuffix(" 00:00:00")  # noqa: E731  (a date is shown as one)
    return FoldScores(steps_back, text(times.min()), text(times.max()), len(data.hold), ev.metrics, ev.baselines)


def backtest(project: Project, pinned: Pinned) -> list[FoldScores]:
    """Folds 1..`folds`-1, each a fresh estimator of the run's config fitted on the pinned version without
    its latest `steps_back` steps and scored on that table's own holdout (`split`), one after another."""
    cfg = project.config
    quiet = StageClock(None)  # the folds are the run's "backtest" stage; their own stages are not reported
    folds = []
    for k in range(1, cfg.split.backtest.folds):
        data, handover, y_train = prepare(project, pinned, quiet, steps_back=k)
        model = estimators.make_estimator(cfg.model, cfg.seed, cfg.task, file=str(project.root / PROJECT_FILE))
        task = fit(project, model, data, handover, y_train, quiet)
        del handover, y_train
        folds.append(fold_scores(k, data, evaluate(cfg, task, model, data), cfg.time_column))
    return folds

