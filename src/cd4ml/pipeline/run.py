"""`cd4ml run`: pinned data -> split -> features -> train -> evaluate -> package ->
register -> gate -> (promote), the stages of `stages.py` and `publish.py` in order.

Every run is tracked in MLflow (params after overrides, metrics, baseline and
oracle metrics, data version, git commit, package versions, plots, the gate
report) and registered as a model version tagged with its lineage and verdict.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cd4ml import tracking
from cd4ml.config import Project, ThresholdChoice
from cd4ml.errors import Cd4mlError
from cd4ml.evaluate.plots import RunPlotsProcess
from cd4ml.gate.checks import FoldScores, GateReport
from cd4ml.pipeline import rerun
from cd4ml.pipeline.backtest import backtest, fold_scores
from cd4ml.pipeline.publish import track
from cd4ml.pipeline.rerun import PROMOTION_TAG
from cd4ml.pipeline.stages import StageClock, StageHook, evaluate, fit, pin, prepare
from cd4ml.release.registry import Registry
from cd4ml.task import Classification


@dataclass
class RunResult:
    run_id: str
    version: str
    data_version: int
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]  # kind -> holdout metrics, as configured
    baseline: dict[str, float]  # the strongest baseline's
    oracle: dict[str, float] | None
    bias: float | None  # regression: sum of holdout predictions / sum of actuals
    gate: GateReport
    promoted: bool
    champion_before: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_as: str | None = None  # the earlier run this one would have repeated
    note: str | None = None  # what a skipped run did about the earlier run's interrupted promotion
    decision_threshold: float | None = None  # chosen on training data (`decision.threshold: {maximize: ...}`)
    backtest: list[FoldScores] = field(default_factory=list)  # with split.backtest: the run's fold, then each earlier one


def run_pipeline(project: Project, *, data_version: int | None = None, on_stage: StageHook | None = None,
                 promote: bool | None = None, force: bool = False,
                 lookup: rerun.EarlierRunLookup | None = None) -> RunResult:
    """Train, evaluate, register and gate one model on one pinned data version.

    `promote` overrides `registry.auto_promote`. A run whose data version, feature
    code and resolved config equal an earlier run's is not repeated: the earlier
    result comes back with `skipped_as` set (unless `force`). The result says
    whether the gate passed; the caller decides the exit code. `lookup`: the search
    for that earlier run, started early for this project (the CLI starts it before it
    imports the pipeline's libraries); by default it starts here.
    """
    cfg = project.config
    clock = StageClock(on_stage)
    with tempfile.TemporaryDirectory(prefix="cd4ml-run-") as tmp_name, contextlib.ExitStack() as cleanup:
        release_dir = Path(tmp_name) / "release"
        pinned = pin(project, data_version, force, lookup, release_dir, clock, cleanup)
        if pinned.earlier is not None:
            return _skipped(pinned.earlier, project, promote)
        data, handover, y_train = prepare(project, pinned, clock)
        task = fit(project, pinned.model, data, handover, y_train, clock)
        del handover, y_train
        registry = Registry.for_project(project, _connect(project))
        with clock("evaluate"):
            ev = evaluate(cfg, task, pinned.model, data)
        if cfg.split.backtest.folds > 1:
            with clock("backtest"):
                ev.folds = [fold_scores(0, data, ev, cfg.time_column), *backtest(project, pinned)]
        # Drawn by a child process while the run registers and gates (on the other core).
        plots_dir = Path(tmp_name) / "plots"
        plots = None
        if cfg.tracking.plots:
            plots = RunPlotsProcess(plots_dir, f"{cfg.project}: holdout", cfg.seed, ev.y_hold, ev.pred,
                                    cfg.metrics.primary, ev.slices, ev.base_slices)
            cleanup.callback(plots.stop)  # before the folder it writes to is removed
        tracked = track(project, pinned, data, ev, registry, release_dir, promote, clock, plots, plots_dir)
    chosen = (ev.task.threshold if isinstance(ev.task, Classification)
              and isinstance(cfg.decision.threshold, ThresholdChoice) else None)
    verdict = tracked.verdict
    return RunResult(tracked.run_id, tracked.version, data.version, ev.metrics, ev.baselines, ev.baseline,
                     ev.oracle, ev.bias.overall if ev.bias else None, verdict.report, verdict.promoted,
                     verdict.champion_before, clock.seconds, decision_threshold=chosen, backtest=ev.folds)


def _connect(project: Project) -> Any:
    """The MLflow client, opened once the fit is done: importing MLflow in a thread next to a fit
    that uses every core slowed the fit by more than the import takes."""
    try:
        return tracking.connect(project)
    except Exception as exc:
        raise Cd4mlError(f"cannot open the MLflow store at {tracking.tracking_uri(project)}: "
                         f"{type(exc).__name__}: {exc}") from exc


def _skipped(earlier: rerun.EarlierRun, project: Project, promote: bool | None) -> RunResult:
    """The result of the earlier run this one would repeat.

    If that run was killed after its version passed the gate and before the promotion was carried
    out, the promotion is carried out now, provided the champion is still the one it was judged against.
    """
    chosen = earlier.decision_threshold if isinstance(project.config.decision.threshold, ThresholdChoice) else None
    result = RunResult(earlier.run_id, earlier.version, earlier.data_version, earlier.metrics, earlier.baselines,
                       earlier.baseline, earlier.oracle, earlier.bias, earlier.gate, False, None,
                       skipped_as=earlier.run_id, decision_threshold=chosen)
    auto = project.config.registry.auto_promote if promote is None else promote
    if earlier.judged_against is None or not auto:
        return result
    registry = Registry.for_project(project)
    with registry.moving():
        champion = registry.champion()
        now = str(champion.version) if champion else ""
        if now == result.version:  # killed after the promotion, before it was noted on the run
            registry.client.set_tag(result.run_id, PROMOTION_TAG, "promoted")
            return result
        if now != earlier.judged_against:
            result.note = (f"its promotion was interrupted, and the champion is now v{now or '-'}, not the "
                           f"v{earlier.judged_against or '-'} it was judged against: use --force to judge it again")
            return result
        registry.promote(result.version, kind="auto-promote",
                         why=f"passed the acceptance gate in run {result.run_id} (promotion resumed)")
        registry.client.set_tag(result.run_id, PROMOTION_TAG, "promoted")
    result.promoted, result.champion_before = True, now or None
    result.note = "its promotion had been interrupted: carried out now"
    return result
