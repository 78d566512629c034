"""The project file `cd4ml.yaml`: one ML problem, parsed into typed config.

Every error names the file, the key (dotted path) and what is wrong. Values
can be overridden per run with `--set dotted.key=value`; overrides are applied
to the raw YAML before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError, ValidationInfo,
                      WithJsonSchema, field_validator, model_validator)

from cd4ml.errors import ConfigError
from cd4ml.periods import PERIODS
from cd4ml.task import REGRESSION, TASKS, Task, task_named
from cd4ml.yamlfile import parse_yaml, read_yaml_file

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cd4ml.features.transforms import HistorySpec

PROJECT_FILE = "cd4ml.yaml"

ColumnType = Literal["int", "float", "str", "bool", "date", "datetime", "week", "month"]
CalendarPart = Literal[
    "year", "month", "day", "dayofweek", "dayofyear", "weekofyear", "hour", "minute", "slot", "is_weekend",
    "is_month_end"
]


@dataclass(frozen=True)
class TypeForms:
    """How the libraries cd4ml passes a column through hold values of one column type."""

    python: type  # a request field (pydantic)
    batch: str | type  # numpy dtype of a served column batch; bools as 0/1 ints, as features are numbers
    pandas: str | type  # dtype a table's column is validated as (pandera)
    pandas_nullable: str | type  # the same for a nullable column: int64 and bool cannot hold a null
    arrow: str  # pyarrow type alias (`pa.type_for_alias`) in the prediction store


COLUMN_TYPES: dict[str, TypeForms] = {
    "int": TypeForms(int, "int64", "int64", "Int64", "int64"),
    "float": TypeForms(float, "float64", "float64", "float64", "float64"),
    "str": TypeForms(str, str, str, str, "string"),
    "bool": TypeForms(bool, "int64", "bool", "boolean", "bool"),
    "date": TypeForms(dt.date, "datetime64[D]", "datetime64[us]", "datetime64[us]", "date32"),
    "datetime": TypeForms(dt.datetime, "datetime64[us]", "datetime64[us]", "datetime64[us]", "timestamp[us]"),
    # Dates given as the period they start (periods.py): 2024-W05 is Monday 2024-01-29, 2024-05 is 2024-05-01.
    "week": TypeForms(dt.date, "datetime64[D]", "datetime64[us]", "datetime64[us]", "date32"),
    "month": TypeForms(dt.date, "datetime64[D]", "datetime64[us]", "datetime64[us]", "date32"),
}
# Types whose values are dates (however they are written).
DATE_TYPES = ("date", "week", "month")
# What a time column may be: a date (or a week or month), a date and time, or a whole year (2019) held as an int.
TIME_TYPES = ("date", "datetime", "int", "week", "month")
# Calendar parts that are always 0 without a time of day.
TIME_OF_DAY_PARTS = ("hour", "minute", "slot")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where raw data comes from: a CSV/Parquet file, or a built-in generator."""

    path: str | None = None
    generator: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "SourceConfig":
        if (self.path is None) == (self.generator is None):
            raise ValueError("give exactly one of 'path' (CSV or Parquet file) or 'generator'")
        if self.path is not None and not self.path.lower().endswith((".csv", ".parquet", ".pq")):
            raise ValueError(f"path {self.path!r} must end in .csv or .parquet")
        return self


class Bound(_Strict):
    """An inclusive range; either end may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Bound":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class ColumnSpec(Bound):
    type: ColumnType
    nullable: bool = False
    categories: list[Any] | None = None


class SchemaConfig(_Strict):
    columns: dict[str, ColumnSpec]
    keys: list[str] = Field(default_factory=list)


class DataConfig(_Strict):
    table: str = ".cd4ml/data/training"
    min_rows: int = 1
    max_null_rate: float = Field(0.0, ge=0.0, le=1.0)


class LookupSpec(_Strict):
    """Attributes that depend only on a key (item -> family): learned from the
    training data and packaged with the model, so requests need only the key."""

    key: str
    columns: list[str]


class HolidaySpec(_Strict):
    country: str
    subdiv: str | None = None


class HistoryWindow(_Strict):
    """A rolling window of the target's past values: `size` steps ending `gap` steps back."""

    size: int = Field(gt=0, le=10_000, description="steps in the window")
    stats: list[Literal["mean", "std", "min", "max"]] = Field(default_factory=lambda: ["mean"], min_length=1)
    gap: int | None = Field(None, ge=1, le=100_000, description="steps back the window ends; default forecast.horizon")


class HistoryConfig(_Strict):
    """History features: each row's own series' target values some steps back (the series, the step and
    the horizon are `forecast:`'s). Computed in training from the pinned table, served from a history store."""

    lags: list[int] = Field(default_factory=list, description="target value N steps back (each >= forecast.horizon)")
    windows: list[HistoryWindow] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list, description="number inputs whose own lags are features too")

    @model_validator(mode="after")
    def _some(self) -> "HistoryConfig":
        if not self.lags and not self.windows:
            raise ValueError("history: give lags, windows or both")
        for lag in self.lags:
            if not 1 <= lag <= 100_000:
                raise ValueError(f"history.lags: {lag} is not a number of steps from 1 to 100000")
        if len(set(self.lags)) != len(self.lags):
            raise ValueError(f"history.lags {self.lags} lists a lag twice")
        for w in self.windows:
            if len(set(w.stats)) != len(w.stats):
                raise ValueError(f"history.windows: stats {w.stats} lists a statistic twice")
        return self


class FeaturesConfig(_Strict):
    lookups: list[LookupSpec] = Field(default_factory=list)
    calendar: list[CalendarPart] = Field(default_factory=list)
    slot_minutes: int | None = Field(None, gt=0, le=1440, description="the length of a 'slot' in minutes")
    holidays: HolidaySpec | None = None
    custom: list[str] = Field(default_factory=list, description="module:function in the project")
    target_encodings: list[list[str]] = Field(default_factory=list)
    encoding_smoothing: float = Field(20.0, ge=0.0)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    history: HistoryConfig | None = None

    @model_validator(mode="after")
    def _has_features(self) -> "FeaturesConfig":
        if not self.categorical and not self.numeric and not self.target_encodings and self.history is None:
            raise ValueError("no model inputs: list columns under 'categorical', 'numeric' or 'target_encodings'")
        for spec in self.custom:
            if ":" not in spec:
                raise ValueError(f"custom feature {spec!r} must be 'module:function'")
        if ("slot" in self.calendar) != (self.slot_minutes is not None):
            raise ValueError("calendar part 'slot' (minutes since midnight // slot_minutes) and "
                             "'slot_minutes' (e.g. 30 for half-hourly data) go together: give both or neither")
        if self.slot_minutes is not None and 1440 % self.slot_minutes:
            raise ValueError(f"slot_minutes {self.slot_minutes} must divide a day (1440 minutes) evenly, "
                             "e.g. 5, 10, 15, 30, 60")
        return self


# A time step: an optional count and a unit (pandas' aliases): 1D, 1h, 30min, 1W (weeks from Monday), 1MS, 1YS.
FREQUENCY_UNITS = ("s", "min", "h", "D", "W", "MS", "YS")
# A season in steps of one unit: a day of hours or minutes, a week of days, a year of weeks or months.
_SEASON_OF = {"s": 86_400, "min": 1440, "h": 24, "D": 7, "W": 52, "MS": 12}


@dataclass(frozen=True)
class Frequency:
    """The time step of a series: `count` units (`unit` one of FREQUENCY_UNITS)."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> "Frequency":
        match = re.fullmatch(r"(\d*)(" + "|".join(FREQUENCY_UNITS) + ")", text.strip())
        if not match or match.group(1).startswith("0"):
            raise ValueError(f"{text!r} is not a time step: a count and a unit ({', '.join(FREQUENCY_UNITS)}), "
                             "e.g. 1D, 1h, 30min, 1W, 1MS, 1YS")
        return cls(int(match.group(1) or 1), match.group(2))

    @property
    def default_season(self) -> int | None:
        """Steps in one season (a day of 30-minute steps: 48; a week of days: 7), if the step divides one."""
        per_unit = _SEASON_OF.get(self.unit)
        if per_unit is None or per_unit % self.count or per_unit == self.count:
            return None  # a season of one step would repeat the last value
        return per_unit // self.count


class BacktestConfig(_Strict):
    """Rolling-origin evaluation: fold k (1..folds-1) is the run again on the table without its latest k steps."""

    folds: int = Field(1, ge=1, le=20, description="evaluations in all, the run's own holdout included")
    step: str | None = Field(None, description="how far each fold's origin is before the next one's: 1W, 7D, 1MS, 1YS")

    @field_validator("step")
    @classmethod
    def _step(cls, v: str | None) -> str | None:
        if v is not None:
            Frequency.parse(v)
        return v

    @model_validator(mode="after")
    def _step_given(self) -> "BacktestConfig":
        if self.folds > 1 and self.step is None:
            raise ValueError(f"{self.folds} folds need a step between their origins, e.g. step: 1W")
        return self


class SplitConfig(_Strict):
    holdout_days: int | None = Field(None, gt=0)
    holdout_periods: int | None = Field(None, gt=0, description="the last N distinct times (years, hours, ...)")
    holdout_rows: int | None = Field(None, gt=0)
    backtest: BacktestConfig = BacktestConfig()

    @model_validator(mode="after")
    def _one_split(self) -> "SplitConfig":
        given = [v for v in (self.holdout_days, self.holdout_periods, self.holdout_rows) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'holdout_days', 'holdout_periods' or 'holdout_rows'")
        return self


class ModelConfig(_Strict):
    algorithm: str = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)
    target_transform: Literal["none", "log1p"] = "none"
    clip_min: float | None = None
    calibration: Literal["none", "isotonic", "sigmoid"] = Field(
        "none", description="classification: class probabilities calibrated on the last part of the training data")


class ThresholdChoice(_Strict):
    """A binary decision threshold chosen on training data to maximise a thresholded metric."""

    maximize: str


class DecisionConfig(_Strict):
    """How a binary classifier's probability becomes a class: `P(positive) >= threshold`."""

    threshold: float | ThresholdChoice = 0.5

    @field_validator("threshold")
    @classmethod
    def _probability(cls, v: float | ThresholdChoice) -> float | ThresholdChoice:
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError(f"{v:g} must lie strictly between 0 and 1")
        return v

    @property
    def fixed(self) -> float:
        """The threshold before any is chosen on training data."""
        return self.threshold if isinstance(self.threshold, float) else 0.5


class WeightSpec(_Strict):
    """Per-row weights for weighted metrics (Favorita: perishable -> 1.25)."""

    column: str
    values: dict[str, float]
    default: float = 1.0

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, v: Any) -> Any:
        # YAML reads `1: 1.25` with an int key; rows are matched by their text form.
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v


class MetricsConfig(_Strict):
    # The regression task's defaults (the `task` key's default); names are checked against the project's task.
    primary: str = REGRESSION.default_metric
    report: list[str] = Field(default_factory=lambda: list(REGRESSION.default_report))
    weight: WeightSpec | None = None

    def row_weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Per-row weights from `weight` (None: unweighted); `frame` holds the weight column."""
        import numpy as np
        import pandas as pd

        spec = self.weight
        if spec is None:
            return None
        column = frame[spec.column]
        if pd.api.types.is_float_dtype(column) and bool((column.dropna() % 1 == 0).all()):
            column = column.astype("Int64")  # 1.0 (a lookup filled through NaN-able floats) is the value "1"
        keys = column.astype(str).to_numpy()
        w = np.full(len(frame), spec.default, dtype=np.float64)
        for value, weight in spec.values.items():
            w[keys == value] = weight
        return w


class ForecastConfig(_Strict):
    """A forecasting problem: which columns name one series, its time step, and how many steps ahead a
    forecast is made (a forecast for time t knows the actuals up to t - horizon steps)."""

    series: list[str] = Field(default_factory=list, description="columns that identify one series; [] = one series")
    frequency: str = Field(description="the time step: 1D, 1h, 30min, 1W, 1MS, 1YS (pandas' aliases)")
    horizon: int = Field(1, ge=1, le=100_000, description="steps between the latest known actual and the forecast time")

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str) -> str:
        Frequency.parse(v)
        return v

    @property
    def step(self) -> Frequency:
        return Frequency.parse(self.frequency)


# LightGBM's objectives with a log link, for counts and amounts (>= 0): their predictions' totals match the actuals'.
COUNT_OBJECTIVES = ("poisson", "tweedie")

BaselineKind = Literal["group_mean", "last_value", "seasonal_naive", "rolling_mean"]
# The baselines that read a series' own history (they need `forecast:`).
HISTORY_BASELINES = ("last_value", "seasonal_naive", "rolling_mean")


class BaselineConfig(_Strict):
    """The naive forecasts a model must beat. `group_mean`: the training mean per `group_by` group;
    with `forecast:`, per series: `last_value` (the actual `horizon` steps back), `seasonal_naive` (the
    actual one `season` back, whole seasons past the horizon) and `rolling_mean` (the mean of the
    `window` actuals ending `horizon` steps back)."""

    kind: list[BaselineKind] | None = Field(
        None, description="default: [group_mean], and with forecast: also last_value and seasonal_naive")
    group_by: list[str] = Field(default_factory=list)
    season: int | None = Field(None, gt=0, le=100_000, description="steps in a season; default from forecast.frequency "
                                                       "(a week of days, a day of hours)")
    window: int = Field(7, gt=0, le=1000, description="steps averaged by rolling_mean")

    @field_validator("kind")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("list each baseline once, and at least one")
        return v


class AcceptanceConfig(_Strict):
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    beat_baseline: bool = True
    champion_tolerance: float = Field(0.0, ge=0.0, description="relative; 0.01 = 1% worse allowed")
    slice_tolerance: float = Field(0.05, ge=0.0)
    min_slice_rows: int = Field(30, ge=1)
    latency_p99_ms: float | None = Field(None, gt=0)
    parity_tolerance: float = Field(0.0, ge=0.0)
    also_no_worse: list[str] = Field(default_factory=list,
                                     description="metrics the champion comparison holds for besides the primary")
    every_fold: bool = Field(False, description="the model must beat every baseline on each backtest fold too")
    bias_tolerance: float | None = Field(
        None, gt=0, description="regression: the sum of the holdout's predictions within this share of the sum of "
                                "its actuals, overall and in every slice (0.05: 5%); null: reported, not enforced")


class RegistryConfig(_Strict):
    model_name: str
    auto_promote: bool = True

    @field_validator("model_name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Checked here so a bad name fails before training, not inside MLflow at registration.
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", v):
            raise ValueError(f"{v!r} must be 1 to 200 letters, digits, '-', '_' or '.'")
        return v


class ServingConfig(_Strict):
    """How `cd4ml serve` treats requests and releases."""

    stale_history: Literal["reject", "fallback"] = Field(
        "reject", description="a forecast whose history the service lacks (a time not after the release's history "
                              "cut-off, or beyond the latest actual plus the horizon): answer 422, or predict and flag")
    unknown_categories: Literal["fallback", "reject"] = Field(
        "fallback", description="values never seen in training: predict and flag, or answer 422")
    max_records: int = Field(1000, gt=0)
    max_body_bytes: int = Field(2_000_000, gt=0)
    merge_max_rows: int = Field(
        256, gt=0, description="concurrent requests are predicted together up to this many rows per call (1: never)")
    offload_rows: int = Field(
        32, ge=0, description="a call of at least this many rows predicts on a worker thread while the event loop "
                              "serves the next requests (LightGBM predicts without the GIL); 0: always inline")
    poll_seconds: float = Field(2.0, gt=0)
    opentelemetry: bool = Field(
        False, description="FastAPI's OpenTelemetry spans and metrics per request, for a process with an "
                           "OpenTelemetry provider set up; off, because looking for one costs about 5% of a "
                           "one-record request even when there is none")
    log_dir: str = ".cd4ml/predictions"
    log_max_bytes: int = Field(64 * 2**20, gt=0)


class DriftConfig(_Strict):
    """When a window of production data counts as drifted from the release's reference profile."""

    features: list[str] | None = Field(
        None, description="columns to watch; default: request inputs (not the time column) + lookup attributes")
    psi_alarm: float = Field(0.25, gt=0, description="population stability index at or above which a column drifted")
    ks_alarm: float = Field(0.1, gt=0, le=1, description="KS statistic at or above which a numeric column drifted")
    bias_alarm: float = Field(0.25, gt=0, description="segment residual bias, in units of the reference residual "
                                                      "standard deviation, at or above which a segment drifted")
    min_rows: int = Field(200, ge=1, description="rows a window (or segment) needs before it is judged")


class AccuracyConfig(_Strict):
    margin: float = Field(0.10, ge=0, description="relative: live primary metric worse than offline by more "
                                                  "than this means retraining is due")
    min_rows: int | None = Field(
        None, ge=1, description="scored rows of the champion a window needs before live accuracy is judged; "
                                "null: half the rows a window of the champion's holdout held, within 30..1000")


class RetrainConfig(_Strict):
    on_drift: bool = True
    on_accuracy: bool = True
    max_age_days: float | None = Field(30.0, gt=0, description="a champion older than this is due for retraining")
    max_fallback_share: float | None = Field(
        0.02, ge=0, le=1, description="share of the champion's latest-window predictions made for inputs it never "
                                      "saw (a new store, a new item) above which it is due for retraining")


class MonitoringConfig(_Strict):
    """Prediction store, actuals, drift and the retraining policy of `cd4ml monitor --check`."""

    store: str = ".cd4ml/monitor"
    window_days: int = Field(7, gt=0, le=36_600, description="drift and accuracy windows, in days of the time "
                                                             "column, counted from Monday 1970-01-05")
    windows: int = Field(4, gt=0, description="how many recent windows a report covers")
    late_after_days: float = Field(7.0, gt=0, description="actuals received later than this after the "
                                                          "prediction are counted as late (still used)")
    plausible_days: int | None = Field(
        90, gt=0, le=3_000_000, description="a prediction whose time column is further than this from the usual distance "
                              "to its serving time is flagged out of range and kept out of windows; null: off")
    drift: DriftConfig = DriftConfig()
    accuracy: AccuracyConfig = AccuracyConfig()
    retrain: RetrainConfig = RetrainConfig()


class TrackingConfig(_Strict):
    uri: str | None = None
    experiment: str | None = None
    plots: bool = True  # false: no holdout plots drawn and logged (a child process per run saved)


# `task: regression` in the file, the `Task` itself in the config (its name again when dumped).
TaskKey = Annotated[Task, PlainValidator(task_named), PlainSerializer(lambda task: task.name, return_type=str),
                    WithJsonSchema({"enum": sorted(TASKS)})]


class ProjectConfig(_Strict):
    project: str
    seed: int = 42
    source: SourceConfig
    data: DataConfig = DataConfig()
    schema_: SchemaConfig = Field(alias="schema")
    task: TaskKey = REGRESSION
    target: str
    time_column: str
    oracle_column: str | None = None
    features: FeaturesConfig
    split: SplitConfig
    model: ModelConfig = ModelConfig()
    decision: DecisionConfig = DecisionConfig()
    metrics: MetricsConfig = MetricsConfig()
    baseline: BaselineConfig = BaselineConfig()
    forecast: ForecastConfig | None = None
    slices: list[str] = Field(default_factory=list)
    feature_tests: str | None = Field("tests", description="the project's own tests, run before training")
    acceptance: AcceptanceConfig = AcceptanceConfig()
    registry: RegistryConfig
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        # `metrics` left out, or without primary/report: the task's defaults, not regression's.
        if not isinstance(data, dict) or not isinstance(data.get("task"), str) or data["task"] not in TASKS:
            return data
        task = TASKS[data["task"]]
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            return data
        defaults = {"primary": task.default_metric, "report": list(task.default_report)}
        return {**data, "metrics": {**defaults, **metrics}}

    @field_validator("metrics")
    @classmethod
    def _task_has_metrics(cls, metrics: MetricsConfig, info: ValidationInfo) -> MetricsConfig:
        task = info.data.get("task")
        if task is not None:  # None when `task` itself is invalid: that error is reported instead
            for name in [metrics.primary, *metrics.report]:
                task.check_metric(name)
        return metrics

    @model_validator(mode="after")
    def _columns_exist(self) -> "ProjectConfig":
        cols = self.schema_.columns
        for key, name in [("target", self.target), ("time_column", self.time_column),
                          ("oracle_column", self.oracle_column)]:
            if name is not None and name not in cols:
                raise ValueError(f"{key} {name!r} is not a column under schema.columns")
        time_type = cols[self.time_column].type
        if time_type not in TIME_TYPES:
            raise ValueError(f"time_column {self.time_column!r} has type {time_type}: a time column must have "
                             "type date, datetime, week (2024-W05), month (2024-05), or int for whole years (2019)")
        self._check_time_grid(time_type)
        self._configure_task()
        self._check_forecast(time_type)
        for key in self.schema_.keys:
            if key not in cols:
                raise ValueError(f"schema.keys names {key!r}, which is not under schema.columns")
        for key, names in [("target", [self.target]), ("time_column", [self.time_column]),
                           ("schema.keys", self.schema_.keys)]:
            for name in names:
                if cols[name].nullable:
                    raise ValueError(f"{key} {name!r} cannot be nullable: remove 'nullable: true' from "
                                     f"schema.columns.{name}")
        for lookup in self.features.lookups:
            for name in [lookup.key, *lookup.columns]:
                if name not in cols:
                    raise ValueError(f"features.lookups names {name!r}, which is not under schema.columns")
        f = self.features
        uses = [("features.numeric", f.numeric), ("features.categorical", f.categorical),
                ("features.target_encodings", [c for cols in f.target_encodings for c in cols]),
                ("features.lookups", [c for lk in f.lookups for c in (lk.key, *lk.columns)])]
        for key, names in uses:
            for name in names:
                if name in self.label_columns:
                    raise ValueError(f"{key} names {name!r}, a label column (target or oracle_column): "
                                     "it is not known when predicting, so it cannot be a model input")
        for name in f.numeric:
            if name in cols and cols[name].type == "str":
                raise ValueError(f"features.numeric names {name!r}, a str column: list it under "
                                 "features.categorical or features.target_encodings instead")
        if self.metrics.weight and self.metrics.weight.column not in cols:
            raise ValueError(f"metrics.weight.column {self.metrics.weight.column!r} is not a column")
        for name in self.monitoring.drift.features or []:
            if name not in cols or name in self.label_columns or name == self.time_column:
                raise ValueError(f"monitoring.drift.features names {name!r}: it must be a column under "
                                 "schema.columns, and neither a label nor the time column")
        computed = {self.metrics.primary, *self.metrics.report}
        for key, names in [("acceptance.thresholds", list(self.acceptance.thresholds)),
                           ("acceptance.also_no_worse", self.acceptance.also_no_worse)]:
            for name in names:
                if name not in computed:
                    raise ValueError(f"{key} names metric {name!r}, which is not computed; "
                                     f"add it to metrics.report (computed: {', '.join(sorted(computed))})")
        return self

    def _configure_task(self) -> None:
        """The task with the target's classes and the decision threshold (classification), after
        checking that the classification-only keys are not set for regression and the other way round."""
        from cd4ml.task import Classification

        target = self.schema_.columns[self.target]
        task = self.task
        task.check_target(self.target, target.type)
        if not isinstance(task, Classification):
            for key, given in [("decision", "decision" in self.model_fields_set),
                               ("model.calibration", self.model.calibration != "none")]:
                if given:
                    raise ValueError(f"{key} applies to classification (task: binary or multiclass), "
                                     "not to task: regression")
            self._check_count_objective(target)
            return
        if self.model.target_transform != "none" or self.model.clip_min is not None:
            raise ValueError("model.target_transform and model.clip_min apply to regression targets only")
        choice = self.decision.threshold
        if task.name != "binary" and "decision" in self.model_fields_set:
            raise ValueError("decision.threshold applies to task: binary (multiclass decides the most "
                             "probable class)")
        if isinstance(choice, ThresholdChoice) and choice.maximize not in task.thresholded_metrics:
            raise ValueError(f"decision.threshold.maximize names {choice.maximize!r}; it must be a metric of "
                             f"decided classes: {', '.join(task.thresholded_metrics)}")
        if self.oracle_column is not None and (task.name != "binary"
                                               or self.schema_.columns[self.oracle_column].type != "float"):
            raise ValueError(f"oracle_column {self.oracle_column!r}: for classification it is the true "
                             "probability of the positive class, a float column of a binary task")
        configured = task.configured(self.target, target.type, target.categories, self.decision.fixed)
        object.__setattr__(self, "task", configured)  # the model is frozen; this is its own validator

    def _check_time_grid(self, time_type: str) -> None:
        """Settings that make no sense for the time column's type (years have no days, dates no hours)."""
        if time_type == "int" and self.split.holdout_days is not None:
            raise ValueError(f"split.holdout_days counts days, but time_column {self.time_column!r} holds years: "
                             "use split.holdout_periods instead (holdout_periods: 3 holds out the last 3 years)")
        if time_type in ("int", "week", "month") and self.features.holidays is not None:
            raise ValueError(f"features.holidays flags days, but time_column {self.time_column!r} holds "
                             f"{'year' if time_type == 'int' else time_type}s")
        if time_type != "datetime":
            for part in self.features.calendar:
                if part in TIME_OF_DAY_PARTS:
                    raise ValueError(f"features.calendar part {part!r} needs a time of day, but time_column "
                                     f"{self.time_column!r} has type {time_type}: it would always be 0")

    def _check_count_objective(self, target: ColumnSpec) -> None:
        """LightGBM's objectives for counts and amounts model the target on its own scale, and refuse negatives."""
        objective = self.model.params.get("objective") if self.model.algorithm == "lightgbm" else None
        if objective not in COUNT_OBJECTIVES:
            return
        if self.model.target_transform != "none":
            raise ValueError(f"model.params.objective {objective} fits the target on its own scale (its log link "
                             f"does what log1p did): set model.target_transform: none")
        if target.min is None or target.min < 0:
            raise ValueError(f"model.params.objective {objective} needs a target that is never negative: give "
                             f"schema.columns.{self.target} min: 0, so that ingest refuses negative values")

    def _check_forecast(self, time_type: str) -> None:
        """`forecast:` names series columns, a step the time column can take, and baselines that fit the task."""
        from cd4ml.task import Regression

        forecast, cols = self.forecast, self.schema_.columns
        if forecast is not None:
            for name in forecast.series:
                if name not in cols or name in self.label_columns or name == self.time_column:
                    raise ValueError(f"forecast.series names {name!r}: it must be a column under schema.columns, "
                                     "and neither a label nor the time column")
                if cols[name].nullable:
                    raise ValueError(f"forecast.series names {name!r}, which is nullable: every row must belong to "
                                     f"a series (remove 'nullable: true' from schema.columns.{name})")
            # One row per series and time step: the table's key, so ingest refuses a repeated step (exit 4).
            series_key = [self.time_column, *forecast.series]
            if not self.schema_.keys:
                object.__setattr__(self.schema_, "keys", series_key)  # frozen model; its own validator
            elif set(self.schema_.keys) != set(series_key):
                raise ValueError(f"schema.keys {self.schema_.keys} must be the time column and forecast.series "
                                 f"({', '.join(series_key)}): one row per series and time step")
            unit = forecast.step.unit
            if time_type == "int" and unit != "YS":
                raise ValueError(f"forecast.frequency {forecast.frequency!r}: time_column {self.time_column!r} "
                                 "holds whole years, so the step is a number of years (1YS)")
            if time_type == "date" and unit in ("s", "min", "h"):
                raise ValueError(f"forecast.frequency {forecast.frequency!r} is shorter than a day, but "
                                 f"time_column {self.time_column!r} holds dates")
            if time_type in PERIODS and unit != PERIODS[time_type].unit:
                raise ValueError(f"forecast.frequency {forecast.frequency!r}: time_column {self.time_column!r} holds "
                                 f"{time_type}s, so the step is a number of them (1{PERIODS[time_type].unit})")
        if self.acceptance.every_fold and self.split.backtest.folds < 2:
            raise ValueError("acceptance.every_fold judges each backtest fold: give split.backtest.folds (2 or "
                             "more) and step")
        step = self.split.backtest.step
        if step is not None and time_type == "int" and Frequency.parse(step).unit != "YS":
            raise ValueError(f"split.backtest.step {step!r}: time_column {self.time_column!r} holds whole years, so "
                             "the step is a number of years (1YS)")
        kinds = self.baseline_kinds
        history = [k for k in kinds if k != "group_mean"]
        if history and forecast is None:
            raise ValueError(f"baseline.kind {history[0]} reads each series' history: describe the series "
                             "under forecast: (series, frequency, horizon)")
        if history and not isinstance(self.task, Regression):
            raise ValueError(f"baseline.kind {history[0]} forecasts a number: it applies to task: regression")
        if "seasonal_naive" in kinds and self.baseline_season is None:
            raise ValueError(f"baseline.season: forecast.frequency {forecast.frequency!r} has no default "
                             "season: give the steps in one season (e.g. 7 for a week of days)")
        self._check_history(time_type)
        if self.acceptance.bias_tolerance is not None and not isinstance(self.task, Regression):
            raise ValueError("acceptance.bias_tolerance compares sums of predicted and actual values: it "
                             "applies to task: regression")

    def _check_history(self, time_type: str) -> None:
        """History features read a regression target's series (`forecast:`), never nearer than the horizon."""
        from cd4ml.task import Regression

        history, forecast = self.features.history, self.forecast
        if history is None:
            return
        if forecast is None:
            raise ValueError("features.history reads each series' past values: describe the series under "
                             "forecast: (series, frequency, horizon)")
        if not isinstance(self.task, Regression):
            raise ValueError("features.history: history features of the target apply to task: regression")
        for lag in history.lags:
            if lag < forecast.horizon:
                raise ValueError(f"features.history.lags: lag {lag} is nearer than forecast.horizon "
                                 f"{forecast.horizon}: a forecast {forecast.horizon} steps ahead cannot know it")
        for w in history.windows:
            if w.gap is not None and w.gap < forecast.horizon:
                raise ValueError(f"features.history.windows: gap {w.gap} is nearer than forecast.horizon "
                                 f"{forecast.horizon}: a forecast {forecast.horizon} steps ahead cannot know it")
        spec = self.history_spec
        assert spec is not None
        if spec.lookback > 100_000:
            raise ValueError(f"features.history reads {spec.lookback} steps back; at most 100000")
        taken = [n for n in spec.names if n in self.schema_.columns]
        if taken:
            raise ValueError(f"features.history: feature {taken[0]!r} has the name of a column under schema.columns")
        for name in history.columns:
            spec_ = self.schema_.columns.get(name)
            if spec_ is None or spec_.type not in ("int", "float", "bool") or name not in self.input_columns \
                    or name in forecast.series:
                raise ValueError(f"features.history.columns names {name!r}: a covariate must be a number (int, float "
                                 "or bool) column that requests carry, neither the target nor a series column")
        if history.columns and not history.lags:
            raise ValueError("features.history.columns: a covariate's features are its lags: give features.history.lags")
        if len(set(history.columns)) != len(history.columns):
            raise ValueError(f"features.history.columns {history.columns} lists a column twice")

    @property
    def history_spec(self) -> HistorySpec | None:
        """What the history features read and compute, as the feature code takes it (None without them)."""
        from cd4ml.features.transforms import HistorySpec, Window

        history, forecast = self.features.history, self.forecast
        if history is None or forecast is None:
            return None
        step = forecast.step
        return HistorySpec(
            series=tuple(forecast.series), time=self.time_column, target=self.target, count=step.count,
            unit=step.unit, horizon=forecast.horizon, lags=tuple(history.lags),
            windows=tuple(Window(w.size, tuple(w.stats), w.gap or forecast.horizon) for w in history.windows),
            columns=tuple(history.columns))

    @property
    def baseline_kinds(self) -> list[str]:
        """The baselines a run scores, in order: `baseline.kind`, or its default for the project."""
        if self.baseline.kind is not None:
            return list(self.baseline.kind)
        if self.forecast is None or self.task.name != "regression":
            return ["group_mean"]
        season = ["seasonal_naive"] if self.forecast.step.default_season else []
        return ["group_mean", "last_value", *season]

    @property
    def baseline_season(self) -> int | None:
        """Steps in one season for seasonal_naive: `baseline.season`, or the frequency's default."""
        if self.baseline.season is not None:
            return self.baseline.season
        return self.forecast.step.default_season if self.forecast is not None else None

    @property
    def label_columns(self) -> list[str]:
        """Columns known only after the fact: never model inputs."""
        return [c for c in (self.target, self.oracle_column) if c is not None]

    @property
    def monitored_columns(self) -> list[str]:
        """Columns whose production distribution is compared with training (drift)."""
        if self.monitoring.drift.features is not None:
            return list(self.monitoring.drift.features)
        return [c for c in self.schema_.columns if c not in self.label_columns and c != self.time_column]

    @property
    def input_columns(self) -> list[str]:
        """Columns a prediction request must carry (lookup attributes are filled from their key)."""
        derived = {c for lookup in self.features.lookups for c in lookup.columns}
        return [c for c in self.schema_.columns if c not in derived and c not in self.label_columns]


class Project:
    """A loaded project: its root folder and its validated config."""

    def __init__(self, root: Path, config: ProjectConfig, overrides: dict[str, Any]) -> None:
        self.root = root
        self.config = config
        self.overrides = overrides

    @property
    def state_dir(self) -> Path:
        """Where cd4ml keeps the project's local state (tracking DB, artifacts, tables)."""
        return self.root / ".cd4ml"

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    @property
    def table_path(self) -> Path:
        return self.resolve(self.config.data.table)

    @property
    def release_cache(self) -> Path:
        """Where releases downloaded from the registry are kept, verified, one folder per version."""
        return self.state_dir / "cache" / "releases"

    @property
    def monitor_dir(self) -> Path:
        """Where the prediction store, the actuals and the monitoring reports live."""
        return self.resolve(self.config.monitoring.store)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse `dotted.key=value` strings; values are read as YAML (5 -> int, true -> bool)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like dotted.key=value", key=item)
        overrides[key.strip()] = parse_yaml(raw, key=f"--set {key.strip()}") if raw.strip() else ""
    return overrides


def dotted_keys(prefix: str, value: Any) -> dict[str, Any]:
    """Nested mappings as {"a.b.c": leaf} (the form `--set` takes); `prefix` goes before every key."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(dotted_keys(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _apply_override(raw: dict[str, Any], dotted: str, value: Any, file: str) -> None:
    node: Any = raw
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {'.'.join(parts[:i + 1])!r} is not a mapping",
                              file=file, key=dotted)
        node = child
    node[parts[-1]] = value


def edit_project_file(root: Path | str, settings: dict[str, Any]) -> None:
    """Set dotted keys in `root`/cd4ml.yaml and write it back (comments are not kept).

    For tools that change a project as a developer would (the demo's commits).
    """
    path = Path(root) / PROJECT_FILE
    raw = read_yaml_file(path)
    for dotted, value in settings.items():
        _apply_override(raw, dotted, value, str(path))
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def _format_validation_error(exc: ValidationError, file: str) -> ConfigError:
    lines, keys = [], []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        key = ".".join(str(p) for p in err["loc"] if p != "schema_") or _key_named_first(msg)
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the README's project file reference)"
        lines.append(f"{file}: {key or '(top level)'}: {msg}")
        keys.append(key)
    return ConfigError("invalid project file\n  " + "\n  ".join(lines), key=keys[0] or None)


def _key_named_first(message: str) -> str:
    """The key a whole-file check's message starts with ("split.holdout_days counts days ..."), or ""."""
    match = re.match(r"([a-z_]+(?:\.[a-z_]+)*)\b", message)
    top = match.group(1).split(".")[0] if match else ""
    return match.group(1) if top in ProjectConfig.model_fields or top == "schema" else ""


def load_project(root: Path | str = ".", overrides: dict[str, Any] | None = None) -> Project:
    """Read `cd4ml.yaml` under `root`, apply overrides, validate.

    Raises ConfigError naming the file, the key and the problem.
    """
    root = Path(root).resolve()
    path = root / PROJECT_FILE
    file = str(path)
    if not path.is_file():
        raise ConfigError(f"no {PROJECT_FILE} here; run 'cd4ml init DIR' to create a project", file=file)
    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of keys to values", file=file)
    overrides = dict(overrides or {})
    for dotted, value in overrides.items():
        _apply_override(raw, dotted, value, file)
    try:
        config = ProjectConfig.model_validate(_dates_to_str(raw))
    except ValidationError as exc:
        raise _format_validation_error(exc, file) from None
    return Project(root, config, overrides)


def _dates_to_str(node: Any) -> Any:
    # YAML reads 2024-01-01 as a date; options and categories keep them as ISO text.
    if isinstance(node, dict):
        return {k: _dates_to_str(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates_to_str(v) for v in node]
    if isinstance(node, (dt.date, dt.datetime)):
        return node.isoformat()
    return node
