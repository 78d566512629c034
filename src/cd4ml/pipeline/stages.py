"""The stages of a run before MLflow: pin (what a run knows before its data loads), prepare (load, split,
features), fit, evaluate. Each returns a typed result; `run.py` runs them in order."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pandas as pd

from cd4ml.config import HISTORY_BASELINES, PROJECT_FILE, Frequency, Project, ProjectConfig
from cd4ml.data.table import TrainingTable
from cd4ml.evaluate.baseline import history_lags, lagged_mean
from cd4ml.evaluate.metrics import Bias, total_bias
from cd4ml.errors import Cd4mlError, ConfigError
from cd4ml.features.code import CodeSnapshot, take_snapshot
from cd4ml.features.transforms import FeatureSpec, Lookup, time_steps
from cd4ml.gate.checks import FoldScores, scored_metrics
from cd4ml.monitor.profile import ReleaseProfile, build_reference
from cd4ml.pipeline import rerun
from cd4ml.pipeline.feature_tests import FeatureTests
from cd4ml.release import estimators
from cd4ml.release.package import frame_to_batch, request_columns
from cd4ml.task import Classification, Task
from cd4ml.train.fit import fit_model
from cd4ml.train.split import time_split

if TYPE_CHECKING:  # a run's plan is an instance of its snapshot's copy of the class
    from cd4ml.features.transforms import FeaturePlan

StageHook = Callable[[str], None]


class StageClock:
    """Times each named stage (`with clock("fit"): ...`), telling `hook` as each begins."""

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


def feature_spec(cfg: ProjectConfig) -> FeatureSpec:
    """The spec a FeaturePlan is built from (stored in every release)."""
    f = cfg.features
    history = cfg.history_spec
    numeric = [*f.numeric, *(n for n in history.names if n not in f.numeric)] if history else f.numeric
    return FeatureSpec(
        time_column=cfg.time_column,
        inputs=tuple(cfg.input_columns),
        lookups=tuple(Lookup(lk.key, tuple(lk.columns)) for lk in f.lookups),
        lookup_columns=tuple(c for lk in f.lookups for c in lk.columns),
        calendar=tuple(f.calendar),
        slot_minutes=f.slot_minutes,
        holidays=f.holidays is not None,
        custom=tuple(f.custom),
        target_encodings=tuple(tuple(cols) for cols in f.target_encodings),
        encoding_smoothing=f.encoding_smoothing,
        categorical=tuple(f.categorical),
        numeric=tuple(numeric),
        target_transform=cfg.model.target_transform,
        clip_min=cfg.model.clip_min,
        task=cfg.task.spec(),  # the run's chosen decision threshold replaces the configured one (train/tuning.py)
        history=history,
    )


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


@dataclass
class Pinned:
    """What a run knows before its data loads."""
    table: TrainingTable
    version: int
    snapshot: CodeSnapshot
    fingerprint: str
    model: Any  # the estimator, not fitted yet
    earlier: rerun.EarlierRun | None  # the earlier run this one repeats, unless forced


@dataclass
class Prepared:
    """The pinned version's rows as a run evaluates on them, once the training rows are features."""
    version: int
    spec: FeatureSpec  # once fitted, with the run's own task (`fit`)
    plan: FeaturePlan  # the snapshot's own class, fitted on the training rows
    n_train: int
    hold: pd.DataFrame
    derived_hold: dict[str, np.ndarray]
    baselines_model_space: dict[str, np.ndarray]  # each baseline's predictions of the holdout, by kind
    # With `forecast:`: the version's rows history features read (series, time, target; training and holdout),
    # and with history features, the same indexed for this plan (a champion's plan indexes the rows again).
    history_rows: dict[str, np.ndarray] | None = None
    history: Any = None


@dataclass
class Evaluation:
    """The fitted model and the baselines scored on the holdout."""
    task: Task  # the project's, with the decision threshold this run chose
    pred: np.ndarray
    y_hold: np.ndarray
    weights: np.ndarray | None
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]  # kind -> metrics, in the configured order
    baseline: dict[str, float]  # the strongest baseline's metrics (best primary metric)
    oracle: dict[str, float] | None
    slices: dict[str, dict[str, dict[str, float]]]
    base_slices: dict[str, dict[str, dict[str, float]]]  # the strongest baseline's
    bias: Bias | None  # regression: sum of predictions / sum of actuals, overall and per slice
    reference: ReleaseProfile  # the reference profile saved in the release (profile.json)
    folds: list[FoldScores] = field(default_factory=list)  # with split.backtest: this run's, then each fold's


def pin(project: Project, data_version: int | None, force: bool, lookup: rerun.EarlierRunLookup | None,
        release_dir: Path, stage: StageClock, cleanup: contextlib.ExitStack) -> Pinned:
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
    fingerprint = rerun.run_fingerprint(cfg, version, snapshot.digest)
    lookup.ask(None if force else fingerprint)
    # Both children end before the data loads: their memory is not added to this process's.
    with stage("tests"):
        tests.wait()
    with stage("earlier_run"):
        earlier = lookup.result()
    return Pinned(table, version, snapshot, fingerprint, model, earlier)


def prepare(project: Project, pinned: Pinned, stage: StageClock,
            steps_back: int = 0) -> tuple[Prepared, estimators.Handover, np.ndarray]:
    """Load and split the pinned version, fit the feature plan; also the training matrix, handed over
    with its only reference (the fit frees it once it holds what it needs), and the training target.
    `steps_back`: a backtest fold's, the version without its latest steps of `split.backtest.step`."""
    cfg = project.config
    spec = feature_spec(cfg)
    with stage("load"):
        frame, version = pinned.table.read(pinned.version)
        _check_table_columns(project, frame, version)
        if steps_back:
            frame = _without_latest_steps(project, frame, steps_back)
        train_df, hold_df = time_split(frame, cfg.time_column, cfg.split, file=str(project.root / PROJECT_FILE))
        history_rows = history_batch(cfg, frame)
        del frame

    with stage("features"):
        transforms = pinned.snapshot.transforms()
        # Every row's history features read the version's earlier rows, holdout ones included: as a service
        # reads the actuals fed back to it, never nearer than the horizon.
        history = transforms.SeriesHistory(spec.history, history_rows) if spec.history is not None else None
        y_train = transforms.forward_target(spec, train_df[cfg.target].to_numpy())
        n_train = len(train_df)
        holidays = holiday_dates(cfg, train_df[cfg.time_column])
        # Only the columns a request can carry (and those the baseline and slices group by): a feature
        # step sees in training what it will see in serving, and the target and oracle are not copied.
        train_batch = frame_to_batch(train_df, _derive_columns(cfg, spec, list(train_df.columns)), shared_text=True)
        del train_df
        try:
            # Only the baselines read derived training rows; every other column is freed early.
            plan, X_train, derived_train = transforms.FeaturePlan.fit_transform(
                spec, train_batch, y_train, pinned.snapshot.resolve(cfg.features.custom), holidays,
                keep=list(dict.fromkeys([*cfg.baseline.group_by, *_history_columns(cfg)])), history=history)
        except transforms.FeatureSpecError as exc:
            raise ConfigError(str(exc), file=str(project.root / PROJECT_FILE), key=exc.key) from None
        del train_batch
        derived_hold = plan.derive(frame_to_batch(hold_df, _derive_columns(cfg, spec, list(hold_df.columns)),
                                                  shared_text=True), history)
        _check_columns(project, derived_hold)
        # The baselines need no model: scored here, the derived training rows need not outlive the fit.
        y_hold = transforms.forward_target(spec, hold_df[cfg.target].to_numpy()) if _history_columns(cfg) else None
        baselines = _baselines(cfg, derived_train, y_train, derived_hold, y_hold)
    return (Prepared(version, spec, plan, n_train, hold_df, derived_hold, baselines, history_rows, history),
            estimators.Handover(X_train), y_train)


def fit(project: Project, model: Any, data: Prepared, handover: estimators.Handover, y_train: np.ndarray,
        stage: StageClock) -> Task:
    """Fit the model, and tune it on the training rows held out of the fit if the project asks
    (calibration, decision threshold); returns the run's task, which `data.spec` takes on: the spec
    saved in the release."""
    with stage("fit"):
        task = fit_model(project.config, model, handover, y_train, data.plan.categorical_indices)
    data.spec = replace(data.spec, task=task.spec())
    return task


def evaluate(cfg: ProjectConfig, task: Task, model: Any, data: Prepared) -> Evaluation:
    """The model and the baselines (and the oracle column, if any) scored on the holdout, with the
    reference profile the release keeps."""
    hold_df, derived_hold = data.hold, data.derived_hold
    X_hold = data.plan.transform(frame_to_batch(hold_df, request_columns(data.spec, list(hold_df.columns))),
                                 data.history)
    y_hold = task.encode(hold_df[cfg.target].to_numpy())
    pred = data.plan.inverse_target(model.predict(X_hold))
    w = cfg.metrics.row_weights(hold_df)
    names = scored_metrics(cfg)
    metrics = task.score(names, y_hold, pred, w)
    baselines = {kind: task.score(names, y_hold, data.plan.inverse_target(space), w)
                 for kind, space in data.baselines_model_space.items()}
    primary = task.metric(cfg.metrics.primary)
    strongest = min(baselines, key=lambda kind: primary.worse_by(baselines[kind][cfg.metrics.primary],
                                                                 metrics[cfg.metrics.primary]))
    base_pred = data.plan.inverse_target(data.baselines_model_space[strongest])
    oracle = task.score(names, y_hold, _oracle(cfg, hold_df), w) if cfg.oracle_column else None
    slices = task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y_hold, pred, w)
    reference = build_reference(cfg, derived_hold, pred, y_hold, data.spec.to_json(),
                                days=_distinct_days(hold_df[cfg.time_column]))
    base_slices = task.slice_scores(derived_hold, cfg.slices, [cfg.metrics.primary], y_hold, base_pred, w)
    bias = total_bias(y_hold, pred, derived_hold, cfg.slices) if not isinstance(task, Classification) else None
    return Evaluation(task, pred, y_hold, w, metrics, baselines, baselines[strongest], oracle, slices, base_slices,
                      bias, reference)


def history_batch(cfg: ProjectConfig, frame: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """The columns of `frame` history features read (series, time, target, the covariates): a forecasting
    project's (the champion's features may read them when this run's do not); None for any other."""
    if cfg.forecast is None:
        return None
    covariates = cfg.features.history.columns if cfg.features.history is not None else []
    return frame_to_batch(frame, list(dict.fromkeys([*cfg.forecast.series, cfg.time_column, cfg.target, *covariates])),
                          shared_text=True)


def _without_latest_steps(project: Project, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The rows before the latest `k` steps of `split.backtest.step` (steps on its calendar grid)."""
    cfg = project.config
    step = Frequency.parse(cfg.split.backtest.step or "")
    steps = time_steps(frame[cfg.time_column].to_numpy(), step.count, step.unit)
    keep = steps <= steps.max() - k
    if not keep.any():
        raise ConfigError(f"backtest fold {k} would start {k} x {step.count}{step.unit} before the data's first time: "
                          "choose fewer folds or a shorter step", file=str(project.root / PROJECT_FILE),
                          key="split.backtest")
    return frame[keep].reset_index(drop=True)


def _history_columns(cfg: ProjectConfig) -> list[str]:
    """The columns the history baselines read: each series' key columns and the time column."""
    if cfg.forecast is None or cfg.baseline_kinds == ["group_mean"]:
        return []
    return [*cfg.forecast.series, cfg.time_column]


def _baselines(cfg: ProjectConfig, train: dict[str, np.ndarray], y_train: np.ndarray, hold: dict[str, np.ndarray],
               y_hold: np.ndarray | None) -> dict[str, np.ndarray]:
    """Each configured baseline's predictions of the holdout (model space), by kind. A history baseline reads
    actuals of the training rows and of holdout rows at least `forecast.horizon` steps earlier; where its
    series has none at the steps it reads (a new series, a gap), it predicts the group mean."""
    group_mean = cfg.task.baseline(train, y_train, hold, cfg.baseline.group_by)
    predicted = {"group_mean": group_mean}
    if _history_columns(cfg):
        assert cfg.forecast is not None and y_hold is not None
        step, series = cfg.forecast.step, cfg.forecast.series
        keys = [np.concatenate([train[c], hold[c]]) for c in series]
        steps = time_steps(np.concatenate([train[cfg.time_column], hold[cfg.time_column]]), step.count, step.unit)
        y = np.concatenate([y_train, y_hold])
        for kind in HISTORY_BASELINES:
            if kind in cfg.baseline_kinds:
                lags = history_lags(kind, cfg.forecast.horizon, cfg.baseline_season, cfg.baseline.window)
                pred = lagged_mean(keys, steps, y, [hold[c] for c in series], steps[len(y_train):], lags)
                predicted[kind] = np.where(np.isnan(pred), group_mean, pred)
    return {kind: predicted[kind] for kind in cfg.baseline_kinds}


def _oracle(cfg: ProjectConfig, hold_df: pd.DataFrame) -> np.ndarray:
    """The oracle column's predictions: target values, or a binary task's probability of the positive class."""
    values = hold_df[cfg.oracle_column].to_numpy(dtype=np.float64)
    return np.column_stack([1.0 - values, values]) if isinstance(cfg.task, Classification) else values


def _distinct_days(times: pd.Series) -> int:
    """Days of the calendar a time column covers (a column of whole periods such as years counts its values)."""
    return int(times.dt.normalize().nunique() if pd.api.types.is_datetime64_any_dtype(times) else times.nunique())


def _derive_columns(cfg: ProjectConfig, spec: FeatureSpec, available: list[str]) -> list[str]:
    """The table columns a run derives features from: a request's, and those the baseline and slices group by."""
    wanted = set(request_columns(spec, available)) | set(cfg.baseline.group_by) | set(cfg.slices) | set(
        _history_columns(cfg))
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
    for key, columns in (("slices", cfg.slices), ("baseline.group_by", cfg.baseline.group_by),
                         ("forecast.series", _history_columns(cfg))):
        for c in columns:
            if c not in derived:
                raise ConfigError(f"column {c!r} is neither in the data nor derived by a feature step",
                                  file=str(project.root / PROJECT_FILE), key=key)
