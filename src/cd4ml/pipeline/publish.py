"""The MLflow run of a run's stages: register the release (pending), gate it against the champion and
promote it, log the plots. Each returns a typed result; `run.py` calls `track` once the model is
evaluated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cd4ml import __version__, tracking
from cd4ml.config import AcceptanceConfig, Project, dotted_keys
from cd4ml.evaluate.plots import RunPlotsProcess
from cd4ml.faults import crash_point
from cd4ml.features.code import folder_digest
from cd4ml.gate.checks import Evidence, GateReport, evaluate, latency_p99
from cd4ml.monitor.profile import save as save_profile
from cd4ml.pipeline import rerun
from cd4ml.pipeline.rerun import GATE_CHAMPION_TAG, PROMOTION_TAG
from cd4ml.pipeline.stages import Evaluation, Pinned, Prepared, StageClock
from cd4ml.release.champion import score_champion
from cd4ml.release.mlflow_model import log_release
from cd4ml.release.package import Release, save_release
from cd4ml.release.registry import PASSED, PENDING, REJECTED, RELEASE_DIGEST, Registry, run_owner
from cd4ml.task import Classification
from cd4ml.train.lineage import git_state, package_versions


@dataclass(frozen=True)
class Verdict:
    """The gate's report on a version, the champion it was judged against and whether it was promoted."""
    report: GateReport
    champion_before: str | None
    promoted: bool


@dataclass(frozen=True)
class Tracked:
    """What the MLflow run registered and decided."""
    run_id: str
    version: str
    verdict: Verdict


def track(project: Project, pinned: Pinned, data: Prepared, ev: Evaluation, registry: Registry,
          release_dir: Path, promote: bool | None, stage: StageClock, plots: RunPlotsProcess | None,
          plots_dir: Path) -> Tracked:
    """The MLflow run: register the release, gate it (and promote it), log the plots (if drawn)."""
    import mlflow

    commit, dirty = git_state(project.root)
    mlflow.set_experiment(experiment_id=tracking.experiment_id(project, registry.client))
    index = rerun.RunIndex.for_project(project)
    if index is not None:  # before any run carries the fingerprint: a fingerprint without a marker has no run
        index.add([pinned.fingerprint])
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        with stage("register"):
            version = register(project, pinned, data, ev, release_dir, registry, run_id, commit, dirty)
            crash_point("run.registered")
        with stage("gate"):
            verdict = gate(project, data, ev, registry, version, run_id, promote)
        if plots is not None:
            with stage("plots"):
                plots.wait()
                mlflow.log_artifacts(str(plots_dir), "plots")
    return Tracked(run_id, version, verdict)


def register(project: Project, pinned: Pinned, data: Prepared, ev: Evaluation, release_dir: Path,
             registry: Registry, run_id: str, commit: str, dirty: bool) -> str:
    """Save the release, log the run, register the model version (pending); returns the version."""
    import mlflow

    cfg = project.config
    info = {"project": cfg.project, "data_version": data.version, "git_commit": commit, "git_dirty": dirty,
            "target": cfg.target, "cd4ml_version": __version__, "code_digest": pinned.snapshot.digest,
            "metrics": ev.metrics}
    inputs = [{"name": c, "type": cfg.schema_.columns[c].type} for c in data.spec.inputs]
    save_release(release_dir, spec=data.spec, plan=data.plan, estimator=pinned.model, snapshot=pinned.snapshot,
                 inputs=inputs, info=info, example=data.hold[list(data.spec.inputs)].head(20), history=data.history_rows)
    save_profile(release_dir, ev.reference)
    _log_run(project, data.version, commit, dirty, pinned.snapshot.digest, ev, data.n_train, len(data.hold))
    mlflow.log_dict({"slices": ev.slices, "baseline_slices": ev.base_slices,
                     **({"bias": ev.bias.to_json()} if ev.bias else {})}, "evaluation/slices.json")
    if isinstance(ev.task, Classification):  # configured or chosen on training data
        mlflow.log_param("decision.threshold", ev.task.threshold)
    requirements = [f"{k}=={v}" for k, v in package_versions().items() if v != "not installed" and k != "cd4ml"]
    version = log_release(release_dir, cfg.registry.model_name, data.hold[list(data.spec.inputs)].head(5),
                          ev.pred[:5], requirements)
    mlflow.set_tags({rerun.FINGERPRINT_TAG: pinned.fingerprint, "cd4ml.model_version": version})
    # Until the gate's verdict is written, the version cannot be promoted without --force.
    registry.tag(version, {"run_id": run_id, "git_commit": commit, "git_dirty": dirty,
                           "data_version": data.version, "primary_metric": cfg.metrics.primary,
                           cfg.metrics.primary: f"{ev.metrics[cfg.metrics.primary]:.6f}",
                           "gate": PENDING, RELEASE_DIGEST: folder_digest(release_dir), **run_owner()})
    return version


def gate(project: Project, data: Prepared, ev: Evaluation, registry: Registry, version: str, run_id: str,
         promote: bool | None) -> Verdict:
    """The reloaded version's parity and latency, then the verdict and the promotion (`judge_and_promote`)."""
    cfg = project.config
    cache = project.release_cache
    hold_df = data.hold
    evidence = Evidence(task=ev.task, primary=cfg.metrics.primary, candidate=ev.metrics, baselines=ev.baselines,
                        candidate_slices=ev.slices, bias=ev.bias, folds=ev.folds)
    reloaded = registry.load(version, cache, threads=0)
    history = data.history_rows
    evidence.parity_max_abs_diff = float(np.max(np.abs(reloaded.predict_frame(hold_df, history) - ev.pred)))
    served = Release(reloaded.folder)  # one thread, as a service predicts
    evidence.latency_p99_ms = latency_p99(served, hold_df, cfg.acceptance.latency_p99_ms)
    auto = cfg.registry.auto_promote if promote is None else promote
    return judge_and_promote(
        registry, evidence, version, run_id, cfg.acceptance, auto,
        lambda champ: score_champion(evidence, registry, champ, cache, hold_df, data.derived_hold, cfg,
                                     ev.weights, ev.y_hold, history))


def judge_and_promote(registry: Registry, evidence: Evidence, version: str, run_id: str,
                      acceptance: AcceptanceConfig, auto: bool, rescore: Callable[[str], None]) -> Verdict:
    """The gate's verdict and the promotion in one turn of the registry's lock: of two overlapping runs,
    the second is judged against the champion the first may have made. `rescore(champion)` adds the
    champion's scores on this run's holdout to `evidence`."""
    import mlflow

    with registry.moving():
        champion = registry.champion()
        before = str(champion.version) if champion else None
        if before is not None:
            rescore(before)
        report = evaluate(acceptance, evidence)
        verdict = PASSED if report.passed else REJECTED
        mlflow.log_dict(report.to_dict(), "gate/report.json")
        mlflow.log_metrics({"gate.passed": float(report.passed), "latency.p99_ms": evidence.latency_p99_ms,
                            "parity.max_abs_diff": evidence.parity_max_abs_diff})
        mlflow.set_tags({"cd4ml.gate": verdict, GATE_CHAMPION_TAG: before or ""})
        registry.tag(version, {"gate": verdict, "gate_failed": ",".join(c.name for c in report.failed)})
        crash_point("run.judged")
        promoted = report.passed and auto
        if promoted:
            registry.promote(version, kind="auto-promote", why=f"passed the acceptance gate in run {run_id}")
        mlflow.set_tag(PROMOTION_TAG, "promoted" if promoted else "not promoted")
    return Verdict(report, before, promoted)


def _log_run(project: Project, pinned: int, commit: str, dirty: bool, digest: str, ev: Evaluation,
             n_train: int, n_hold: int) -> None:
    """Params after overrides, metrics with the baselines (`baseline.` the strongest, `baseline_<kind>.` each),
    bias and oracle, lineage tags, the resolved config."""
    import mlflow

    cfg = project.config
    mlflow.log_params({**dotted_keys("model.params", dict(cfg.model.params)),
                       "model.algorithm": cfg.model.algorithm, "model.target_transform": cfg.model.target_transform,
                       "seed": cfg.seed, "data.version": pinned,
                       "split": json.dumps(cfg.split.model_dump(exclude_none=True)),
                       "features": json.dumps(cfg.features.model_dump(mode="json"))[:6000]})
    mlflow.log_metrics({**ev.metrics, **{f"baseline.{k}": v for k, v in ev.baseline.items()},
                        **{f"baseline_{kind}.{k}": v for kind, scores in ev.baselines.items()
                           for k, v in scores.items()},
                        **({"bias.overall": ev.bias.overall} if ev.bias else {}),
                        **{f"backtest.fold{f.steps_back}.{k}": v for f in ev.folds for k, v in f.metrics.items()},
                        **{f"backtest.fold{f.steps_back}.{kind}.{k}": v for f in ev.folds
                           for kind, scores in f.baselines.items() for k, v in scores.items()},
                        **({f"oracle.{k}": v for k, v in ev.oracle.items()} if ev.oracle else {}),
                        "rows.train": n_train, "rows.holdout": n_hold})
    mlflow.set_tags({"cd4ml.version": __version__, "cd4ml.git_commit": commit, "cd4ml.git_dirty": str(dirty),
                     "cd4ml.data_table": cfg.data.table,  # as configured: relative to the project
                     "cd4ml.data_version": str(pinned),
                     "cd4ml.code_digest": digest, "cd4ml.overrides": json.dumps(project.overrides, default=str),
                     **{f"cd4ml.pkg.{k}": v for k, v in package_versions().items()}})
    mlflow.log_dict(cfg.model_dump(mode="json", by_alias=True), "config/cd4ml.resolved.json")
