"""`cd4ml run`: pinned data -> split -> features -> train -> evaluate -> package ->
register -> gate -> (promote).

Every run is tracked in MLflow (params after overrides, metrics, baseline and
oracle metrics, data version, git commit, package versions, plots, the gate
report) and registered as a model version tagged with its lineage and verdict.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pandas as pd

from cd4ml import __version__, tracking
from cd4ml.config import PROJECT_FILE, AcceptanceConfig, Project, ProjectConfig, ThresholdChoice
from cd4ml.data.table import TrainingTable
from cd4ml.errors import Cd4mlError, ConfigError, FeatureTestsFailed, ReleaseError
from cd4ml.evaluate.plots import RunPlotsProcess
from cd4ml.features.code import CodeSnapshot, folder_digest, take_snapshot
from cd4ml.gate.checks import Check, Evidence, GateReport, evaluate
from cd4ml.monitor.profile import build_reference, save as save_profile
from cd4ml.release import estimators
from cd4ml.release.package import Release, frame_to_batch, request_columns, save_release
from cd4ml.faults import crash_point
from cd4ml.release.registry import PASSED, PENDING, REJECTED, RELEASE_DIGEST, Registry, run_owner
from cd4ml.task import Classification, Task
from cd4ml.train import rerun, tuning
from cd4ml.train.rerun import GATE_CHAMPION_TAG, PROMOTION_TAG
from cd4ml.train.lineage import git_state, package_versions
from cd4ml.train.split import time_split

if TYPE_CHECKING:  # a run's plan is an instance of its snapshot's copy of the class
    from cd4ml.features.transforms import FeaturePlan

StageHook = Callable[[str], None]


@dataclass
class RunResult:
    run_id: str
    version: str
    data_version: int
    metrics: dict[str, float]
    baseline: dict[str, float]
    oracle: dict[str, float] | None
    gate: GateReport
    promoted: bool
    champion_before: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_as: str | None = None  # the earlier run this one would have repeated
    note: str | None = None  # what a skipped run did about the earlier run's interrupted promotion
    decision_threshold: float | None = None  # chosen on training data (`decision.threshold: {maximize: ...}`)


def run_fingerprint(cfg: ProjectConfig, data_version: int, code_digest: str) -> str:
    """What determines a run's model and verdict: data version, feature code, resolved config, cd4ml.

    Nothing in it names the project's folder: a moved or copied project repeats its runs.
    """
    doc = {"data_version": data_version, "code": code_digest, "cd4ml": __version__,
           "config": cfg.model_dump(mode="json", by_alias=True)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _skipped(earlier: rerun.EarlierRun, project: Project, promote: bool | None) -> RunResult:
    """The result of the earlier run this one would repeat.

    If that run was killed after its version passed the gate and before the promotion was carried
    out, the promotion is carried out now, provided the champion is still the one it was judged against.
    """
    gate = GateReport([Check(**c) for c in earlier.checks])
    result = RunResult(earlier.run_id, earlier.version, earlier.data_version, earlier.metrics,
                       earlier.baseline, earlier.oracle, gate, False, None, skipped_as=earlier.run_id)
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


def feature_spec(cfg: ProjectConfig) -> dict[str, Any]:
    """The JSON spec a FeaturePlan is built from (stored in every release)."""
    f = cfg.features
    return {
        "time_column": cfg.time_column,
        "inputs": cfg.input_columns,
        "lookups": [{"key": lk.key, "columns": list(lk.columns)} for lk in f.lookups],
        "lookup_columns": [c for lk in f.lookups for c in lk.columns],
        "calendar": list(f.calendar),
        "slot_minutes": f.slot_minutes,
        "holidays": f.holidays is not None,
        "custom": list(f.custom),
        "target_encodings": [list(cols) for cols in f.target_encodings],
        "encoding_smoothing": f.encoding_smoothing,
        "categorical": list(f.categorical),
        "numeric": list(f.numeric),
        "target_transform": cfg.model.target_transform,
        "clip_min": cfg.model.clip_min,
        "task": cfg.task.spec(),  # the run's chosen decision threshold replaces the configured one (train/tuning.py)
    }


def holiday_dates(cfg: ProjectConfig, times: pd.Series) -> np.ndarray:
    """Holiday dates from the data's first year to ten years past its last, packaged with the model."""
    if cfg.features.holidays is None:
        return np.array([], dtype="datetime64[D]")
    import holidays

    years = range(int(times.min().year), int(times.max().year) + 11)
    try:
        days = holidays.country_holidays(cfg.features.holidays.country, subdiv=cfg.features.holidays.subdiv,
                                         years=years)
    except NotImplementedError as exc:
        raise ConfigError(str(exc), key="features.holidays") from None
    return np.array(sorted(days), dtype="datetime64[D]")


class _Stages:
    def __init__(self, hook: StageHook | None) -> None:
        self.hook = hook
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.hook:
            self.hook(name)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 3)


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _distinct_days(times: pd.Series) -> int:
    """Days of the calendar a time column covers (a column of whole periods such as years counts its values)."""
    return int(times.dt.normalize().nunique() if pd.api.types.is_datetime64_any_dtype(times) else times.nunique())


@dataclass
class _Pinned:
    """What a run knows before its data loads."""
    table: TrainingTable
    version: int
    snapshot: CodeSnapshot
    fingerprint: str
    model: Any  # the estimator, not fitted yet
    earlier: rerun.EarlierRun | None  # the earlier run this one repeats, unless forced


@dataclass
class _Prepared:
    """The pinned version's rows as a run evaluates on them, once the training rows are features."""
    version: int
    spec: dict[str, Any]
    plan: FeaturePlan  # the snapshot's own class, fitted on the training rows
    n_train: int
    hold: pd.DataFrame
    derived_hold: dict[str, np.ndarray]
    base_model_space: np.ndarray  # the naive baseline's predictions of the holdout


@dataclass
class _Evaluation:
    """The fitted model and the baseline scored on the holdout."""
    task: Task  # the project's, with the decision threshold this run chose
    pred: np.ndarray
    y_hold: np.ndarray
    weights: np.ndarray | None
    metrics: dict[str, float]
    baseline: dict[str, float]
    oracle: dict[str, float] | None
    slices: dict[str, dict[str, dict[str, float]]]
    base_slices: dict[str, dict[str, dict[str, float]]]
    reference: dict[str, Any]  # the reference profile saved in the release (monitor/profile.py's document)


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
    stage = _Stages(on_stage)
    with tempfile.TemporaryDirectory(prefix="cd4ml-run-") as tmp_name, contextlib.ExitStack() as cleanup:
        release_dir = Path(tmp_name) / "release"
        pinned = _pin(project, data_version, force, lookup, release_dir, stage, cleanup)
        if pinned.earlier is not None:
            return _skipped(pinned.earlier, project, promote)
        data, handover, y_train = _prepare(project, pinned, stage)
        task = _fit(project, pinned.model, data.plan, handover, y_train, stage)
        del handover, y_train
        data.spec["task"] = task.spec()  # the plan's own spec: saved in the release
        registry = Registry.for_project(project, _connect(project))
        with stage("evaluate"):
            ev = _evaluate(cfg, task, pinned.model, data)
        # Drawn by a child process while the run registers and gates (on the other core).
        plots_dir = Path(tmp_name) / "plots"
        plots = RunPlotsProcess(plots_dir, f"{cfg.project}: holdout", cfg.seed, ev.y_hold, ev.pred,
                                cfg.metrics.primary, ev.slices, ev.base_slices)
        cleanup.callback(plots.stop)  # before the folder it writes to is removed
        return _track(project, pinned, data, ev, registry, release_dir, promote, stage, plots, plots_dir)


def _pin(project: Project, data_version: int | None, force: bool, lookup: rerun.EarlierRunLookup | None,
         release_dir: Path, stage: _Stages, cleanup: contextlib.ExitStack) -> _Pinned:
    """Everything before the data loads: the estimator, the project's tests, the data version, the
    feature code's snapshot and the earlier run with the same fingerprint."""
    cfg = project.config
    # The search for an earlier run runs in a child process unless MLflow is loaded here already;
    # cd4ml's index of the embedded store can rule the fingerprint out first, and the child is then
    # stopped before it opens the store (rerun.py says when a store that cannot be reached stops the
    # run here, even with --force).
    lookup = lookup or rerun.EarlierRunLookup.for_project(project)
    cleanup.callback(lookup.stop)
    estimators.import_lightgbm()  # before MLflow, whose threads may import what it hides meanwhile
    # Built before anything runs or loads: a wrong algorithm (a classifier) is refused at once.
    model = estimators.make_estimator(cfg.model, cfg.seed, cfg.task, file=str(project.root / PROJECT_FILE))
    # The project's tests run even before a rerun can be skipped: they guard code the model may not use.
    tests = FeatureTests(project)
    cleanup.callback(tests.stop)
    table = TrainingTable.for_project(project)
    version = table.version_number(data_version)
    snapshot = take_snapshot(project.root, cfg.features.custom, release_dir / "code")
    fingerprint = run_fingerprint(cfg, version, snapshot.digest)
    lookup.ask(None if force else fingerprint)
    # Both children end before the data loads: their memory is not added to this process's.
    with stage("tests"):
        tests.wait()
    with stage("earlier_run"):
        earlier = lookup.result()
    return _Pinned(table, version, snapshot, fingerprint, model, earlier)


def _prepare(project: Project, pinned: _Pinned,
             stage: _Stages) -> tuple[_Prepared, estimators.Handover, np.ndarray]:
    """Load and split the pinned version, fit the feature plan; also the training matrix, handed over
    with its only reference (the fit frees it once it holds what it needs), and the training target."""
    cfg = project.config
    with stage("load"):
        frame, version = pinned.table.read(pinned.version)
        _check_table_columns(project, frame, version)
        train_df, hold_df = time_split(frame, cfg.time_column, cfg.split, file=str(project.root / PROJECT_FILE))
        del frame

    with stage("features"):
        transforms = pinned.snapshot.transforms()
        spec = feature_spec(cfg)
        y_train = transforms.forward_target(spec, train_df[cfg.target].to_numpy())
        n_train = len(train_df)
        holidays = holiday_dates(cfg, train_df[cfg.time_column])
        # Only the columns a request can carry (and those the baseline and slices group by): a feature
        # step sees in training what it will see in serving, and the target and oracle are not copied.
        train_batch = frame_to_batch(train_df, _derive_columns(cfg, spec, list(train_df.columns)), shared_text=True)
        del train_df
        try:
            # Only the baseline reads derived training rows; every other column is freed early.
            plan, X_train, derived_train = transforms.FeaturePlan.fit_transform(
                spec, train_batch, y_train, pinned.snapshot.resolve(cfg.features.custom), holidays,
                keep=list(cfg.baseline.group_by))
        except transforms.FeatureSpecError as exc:
            raise ConfigError(str(exc), file=str(project.root / PROJECT_FILE), key=exc.key) from None
        del train_batch
        derived_hold = plan.derive(frame_to_batch(hold_df, _derive_columns(cfg, spec, list(hold_df.columns)),
                                                  shared_text=True))
        _check_columns(project, derived_hold)
        # The baseline needs no model: scored here, the derived training rows need not outlive the fit.
        base_model_space = cfg.task.baseline(derived_train, y_train, derived_hold, cfg.baseline.group_by)
    return (_Prepared(version, spec, plan, n_train, hold_df, derived_hold, base_model_space),
            estimators.Handover(X_train), y_train)


def _fit(project: Project, model: Any, plan: FeaturePlan, handover: estimators.Handover, y_train: np.ndarray,
         stage: _Stages) -> Task:
    """Fit the model, and tune it on the training rows held out of the fit if the project asks
    (calibration, decision threshold); returns the run's task."""
    cfg = project.config
    with stage("fit"):
        held = tuning.held_out(cfg, handover, y_train)
        estimators.fit(model, held.fit_X if held else handover, held.fit_y if held else y_train,
                       plan.categorical_indices, cfg.model.algorithm)
        return tuning.tune(cfg, model, held) if held else cfg.task


def _connect(project: Project) -> Any:
    """The MLflow client, opened once the fit is done: importing MLflow in a thread next to a fit
    that uses every core slowed the fit by more than the import takes."""
    try:
        return tracking.connect(project)
    except Exception as exc:
        raise Cd4mlError(f"cannot open the MLflow store at {tracking.tracking_uri(project)}: "
                         f"{type(exc).__name__}: {exc}") from exc


def _evaluate(cfg: ProjectConfig, task: Task, model: Any, data: _Prepared) -> _Evaluation:
    hold_df, derived_hold = data.hold, data.derived_hold
    X_hold = data.plan.transform(frame_to_batch(hold_df, request_columns(data.spec, list(hold_df.columns))))
    y_hold = task.encode(hold_df[cfg.target].to_numpy())
    pred = data.plan.inverse_target(model.predict(X_hold))
    w = cfg.metrics.row_weights(hold_df)
    names = scored_metrics(cfg)
    metrics = task.score(names, y_hold, pred, w)
    base_pred = data.plan.inverse_target(data.base_model_space)
    baseline = task.score(names, y_hold, base_pred, w)
    oracle = task.score(names, y_hold, _oracle(cfg, hold_df), w) if cfg.oracle_column else None
    slices = task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y_hold, pred, w)
    reference = build_reference(cfg, derived_hold, pred, y_hold, data.spec,
                                days=_distinct_days(hold_df[cfg.time_column]))
    base_slices = task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y_hold, base_pred, w)
    return _Evaluation(task, pred, y_hold, w, metrics, baseline, oracle, slices, base_slices, reference)


def scored_metrics(cfg: ProjectConfig) -> list[str]:
    """The metrics a run scores (model, baseline, oracle, champion): primary, report, and those the gate
    compares with the champion."""
    return list(dict.fromkeys([cfg.metrics.primary, *cfg.metrics.report, *cfg.acceptance.also_no_worse]))


def _oracle(cfg: ProjectConfig, hold_df: pd.DataFrame) -> np.ndarray:
    """The oracle column's predictions: target values, or a binary task's probability of the positive class."""
    values = hold_df[cfg.oracle_column].to_numpy(dtype=np.float64)
    return np.column_stack([1.0 - values, values]) if isinstance(cfg.task, Classification) else values


def _track(project: Project, pinned: _Pinned, data: _Prepared, ev: _Evaluation, registry: Registry,
           release_dir: Path, promote: bool | None, stage: _Stages, plots: RunPlotsProcess,
           plots_dir: Path) -> RunResult:
    """The MLflow run: register the release, gate it (and promote it), log the plots."""
    import mlflow

    commit, dirty = git_state(project.root)
    mlflow.set_experiment(experiment_id=tracking.experiment_id(project, registry.client))
    index = rerun.RunIndex.for_project(project)
    if index is not None:  # before any run carries the fingerprint: a fingerprint without a marker has no run
        index.add([pinned.fingerprint])
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        with stage("register"):
            version = _register(project, pinned, data, ev, release_dir, registry, run_id, commit, dirty)
            crash_point("run.registered")
        with stage("gate"):
            report, champion_before, promoted = _gate(project, data, ev, registry, version, run_id, promote)
        with stage("plots"):
            plots.wait()
            mlflow.log_artifacts(str(plots_dir), "plots")
    chosen = (ev.task.threshold if isinstance(ev.task, Classification)
              and isinstance(project.config.decision.threshold, ThresholdChoice) else None)
    return RunResult(run_id, version, data.version, ev.metrics, ev.baseline, ev.oracle, report, promoted,
                     champion_before, stage.seconds, decision_threshold=chosen)


def _register(project: Project, pinned: _Pinned, data: _Prepared, ev: _Evaluation, release_dir: Path,
              registry: Registry, run_id: str, commit: str, dirty: bool) -> str:
    """Save the release, log the run, register the model version (pending); returns the version."""
    import mlflow

    cfg = project.config
    info = {"project": cfg.project, "data_version": data.version, "git_commit": commit, "git_dirty": dirty,
            "target": cfg.target, "cd4ml_version": __version__, "code_digest": pinned.snapshot.digest,
            "metrics": ev.metrics}
    inputs = [{"name": c, "type": cfg.schema_.columns[c].type} for c in data.spec["inputs"]]
    save_release(release_dir, plan=data.plan, estimator=pinned.model, snapshot=pinned.snapshot, inputs=inputs,
                 info=info, example=data.hold[data.spec["inputs"]].head(20))
    save_profile(release_dir, ev.reference)
    _log_run(project, data.version, commit, dirty, pinned.snapshot.digest, ev.metrics, ev.baseline, ev.oracle,
             data.n_train, len(data.hold))
    mlflow.log_dict({"slices": ev.slices, "baseline_slices": ev.base_slices}, "evaluation/slices.json")
    if isinstance(ev.task, Classification):  # configured or chosen on training data
        mlflow.log_param("decision.threshold", ev.task.threshold)
    version = _log_model(cfg, release_dir, data.hold, ev.pred, data.spec)
    mlflow.set_tags({rerun.FINGERPRINT_TAG: pinned.fingerprint, "cd4ml.model_version": version})
    # Until the gate's verdict is written, the version cannot be promoted without --force.
    registry.tag(version, {"run_id": run_id, "git_commit": commit, "git_dirty": dirty,
                           "data_version": data.version, "primary_metric": cfg.metrics.primary,
                           cfg.metrics.primary: f"{ev.metrics[cfg.metrics.primary]:.6f}",
                           "gate": PENDING, RELEASE_DIGEST: folder_digest(release_dir), **run_owner()})
    return version


def _gate(project: Project, data: _Prepared, ev: _Evaluation, registry: Registry, version: str, run_id: str,
          promote: bool | None) -> tuple[GateReport, str | None, bool]:
    """The reloaded version's parity and latency, then the verdict and the promotion (`_judge_and_promote`)."""
    cfg = project.config
    cache = project.release_cache
    hold_df = data.hold
    evidence = Evidence(task=ev.task, primary=cfg.metrics.primary, candidate=ev.metrics, baseline=ev.baseline,
                        candidate_slices=ev.slices)
    reloaded = registry.load(version, cache, threads=0)
    evidence.parity_max_abs_diff = float(np.max(np.abs(reloaded.predict_frame(hold_df) - ev.pred)))
    served = Release(reloaded.folder)  # one thread, as a service predicts
    evidence.latency_p99_ms = latency_p99(served, hold_df, cfg.acceptance.latency_p99_ms)
    auto = cfg.registry.auto_promote if promote is None else promote
    return _judge_and_promote(
        registry, evidence, version, run_id, cfg.acceptance, auto,
        lambda champ: _score_champion(evidence, registry, champ, cache, hold_df, data.derived_hold, cfg,
                                      ev.weights, ev.y_hold))


def latency_p99(release: Release, frame: pd.DataFrame, budget_ms: float | None, rounds: int = 3) -> float:
    """The p99 (ms) of `release`'s single-row predictions of `frame`'s rows. A round over `budget_ms`
    is measured again, `rounds` times at most, and the best round counts: a neighbour's burst of CPU on
    a shared machine must not reject a model; a model that is slow in every round still fails."""
    best = float("inf")
    for _ in range(rounds):
        best = min(best, float(np.percentile(release.latency_ms(frame), 99)))
        if budget_ms is None or best <= budget_ms:
            break
    return best


def _judge_and_promote(registry: Registry, evidence: Evidence, version: str, run_id: str,
                       acceptance: AcceptanceConfig, auto: bool,
                       score_champion: Callable[[str], None]) -> tuple[GateReport, str | None, bool]:
    """The gate's verdict and the promotion in one turn of the registry's lock: of two overlapping runs,
    the second is judged against the champion the first may have made. Returns the report, the
    champion judged against and whether the version was promoted."""
    import mlflow

    with registry.moving():
        champion = registry.champion()
        before = str(champion.version) if champion else None
        if before is not None:
            score_champion(before)
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
    return report, before, promoted


class FeatureTests:
    """The project's own tests (pytest, in a child process), started at once and waited for before
    training: a failing test stops the pipeline before anything is trained or registered."""

    def __init__(self, project: Project) -> None:
        import subprocess
        import sys

        self.folder = project.config.feature_tests
        self.proc = None
        if self.folder and project.resolve(self.folder).exists():
            self.proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", self.folder],
                                         cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self) -> str | None:
        """pytest's summary line (None without a tests folder); raises FeatureTestsFailed."""
        if self.proc is None:
            return None
        try:
            stdout, stderr = self.proc.communicate(timeout=900)
        finally:
            self.stop()
        lines = stdout.strip().splitlines()
        summary = lines[-1] if lines else stderr.strip()[-500:]
        if self.proc.returncode not in (0, 5):  # 5: no tests collected
            tail = "\n".join(lines[-25:])
            raise FeatureTestsFailed(f"the project's tests in {self.folder}/ failed ({summary}); the pipeline "
                                     f"stopped before training\n{tail}")
        return summary


def _derive_columns(cfg: ProjectConfig, spec: dict[str, Any], available: list[str]) -> list[str]:
    """The table columns a run derives features from: a request's, and those the baseline and slices group by."""
    wanted = set(request_columns(spec, available)) | set(cfg.baseline.group_by) | set(cfg.slices)
    return [c for c in available if c in wanted]


def _check_table_columns(project: Project, frame: pd.DataFrame, version: int) -> None:
    """Every schema column must be in the pinned table version (the schema may be newer than the data)."""
    missing = [c for c in project.config.schema_.columns if c not in frame.columns]
    if missing:
        raise Cd4mlError(f"data version {version} of {project.table_path} has no column(s) {', '.join(missing)}, "
                         f"which schema.columns in {PROJECT_FILE} lists: run 'cd4ml data ingest' to store a version "
                         "with them, or pin a data version that has them")


def _check_columns(project: Project, derived: dict[str, np.ndarray]) -> None:
    """Slice and baseline columns must exist once features are derived."""
    cfg = project.config
    for key, columns in (("slices", cfg.slices), ("baseline.group_by", cfg.baseline.group_by)):
        for c in columns:
            if c not in derived:
                raise ConfigError(f"column {c!r} is neither in the data nor derived by a feature step",
                                  file=str(project.root / PROJECT_FILE), key=key)


def _log_run(project: Project, pinned: int, commit: str, dirty: bool, digest: str, metrics: dict[str, float],
             baseline: dict[str, float], oracle: dict[str, float] | None, n_train: int, n_hold: int) -> None:
    """Params after overrides, metrics with baseline and oracle, lineage tags, the resolved config."""
    import mlflow

    cfg = project.config
    mlflow.log_params({**_flat("model.params", dict(cfg.model.params)),
                       "model.algorithm": cfg.model.algorithm, "model.target_transform": cfg.model.target_transform,
                       "seed": cfg.seed, "data.version": pinned,
                       "split": json.dumps(cfg.split.model_dump(exclude_none=True)),
                       "features": json.dumps(cfg.features.model_dump(mode="json"))[:6000]})
    mlflow.log_metrics({**metrics, **{f"baseline.{k}": v for k, v in baseline.items()},
                        **({f"oracle.{k}": v for k, v in oracle.items()} if oracle else {}),
                        "rows.train": n_train, "rows.holdout": n_hold})
    mlflow.set_tags({"cd4ml.version": __version__, "cd4ml.git_commit": commit, "cd4ml.git_dirty": str(dirty),
                     "cd4ml.data_table": cfg.data.table,  # as configured: relative to the project
                     "cd4ml.data_version": str(pinned),
                     "cd4ml.code_digest": digest, "cd4ml.overrides": json.dumps(project.overrides, default=str),
                     **{f"cd4ml.pkg.{k}": v for k, v in package_versions().items()}})
    mlflow.log_dict(cfg.model_dump(mode="json", by_alias=True), "config/cd4ml.resolved.json")


def _score_champion(ev: Evidence, registry: Registry, version: str, cache: Path, hold_df: pd.DataFrame,
                    derived_hold: dict[str, np.ndarray], cfg: ProjectConfig, w: np.ndarray | None,
                    y: np.ndarray) -> None:
    """Re-score the current champion on this run's holdout (`y`: its encoded target), with its own
    packaged code and its own decision threshold."""
    ev.champion_version = version
    try:
        champ: Release = registry.load(version, cache, threads=0)
        if _problem(champ.task) != _problem(ev.task):
            raise ReleaseError(f"it predicts {_problem(champ.task)}, this run {_problem(ev.task)}")
        pred = champ.predict_frame(hold_df)
    except Exception as exc:  # any failure of an old release is a verdict, not a crash
        ev.champion_error = f"{type(exc).__name__}: {exc}"
        return
    ev.champion = champ.task.score(scored_metrics(cfg), y, pred, w)
    ev.champion_slices = champ.task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y, pred, w)


def _problem(task: Task) -> dict[str, Any]:
    """What a release predicts: its task and classes (a decision threshold aside)."""
    return {k: v for k, v in task.spec().items() if k != "threshold"}


def _log_model(cfg: ProjectConfig, release_dir: Path, hold_df: pd.DataFrame, pred: np.ndarray,
               spec: dict[str, Any]) -> str:
    """Log the release as an MLflow pyfunc model and register it; returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    import cd4ml.release

    example = hold_df[spec["inputs"]].head(5)
    reqs = [f"{k}=={v}" for k, v in package_versions().items() if v != "not installed" and k != "cd4ml"]
    # MLflow prints "Registered model ..." lines to stderr; cd4ml reports the version itself.
    with contextlib.redirect_stderr(io.StringIO()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(cd4ml.release.__file__).with_name("mlflow_entry.py")),
            artifacts={"release": str(release_dir)}, signature=infer_signature(example, pred[:5]),
            input_example=example, pip_requirements=reqs, registered_model_name=cfg.registry.model_name,
        )
    return str(info.registered_model_version)
