"""The task contract: what kind of problem a project solves, asked by every stage.

A `Task` says which schema types its target may have, which metrics exist (each with its direction)
and which is the default, the naive baseline, which estimators fit it, what the service answers for
n predictions and how the prediction store keeps them, and the residual the monitoring checks watch.
The project's task is `ProjectConfig.task` (the `task:` key). `Regression` is the only task so far.

Shapes: `y`, `p`, `w` are 1-D arrays of one length n (actuals, predictions in target units,
optional non-negative weights); a batch maps column names to such arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cd4ml.errors import ConfigError
from cd4ml.evaluate.baseline import naive_baseline, slice_scores
from cd4ml.evaluate.metrics import METRICS, Metric
from cd4ml.features.transforms import forward_target

if TYPE_CHECKING:
    import pyarrow as pa

SliceScores = dict[str, dict[str, dict[str, float]]]  # column -> value -> {metric: value, "rows": n}


class Task(ABC):
    """One kind of supervised problem; instances are stateless, one per kind (`TASKS`)."""

    name: ClassVar[str]
    target_types: ClassVar[tuple[str, ...]]  # schema column types (config's `ColumnType`) a target may have
    metrics: ClassVar[Mapping[str, Metric]]
    default_metric: ClassVar[str]  # `metrics.primary` when the project file names none
    default_report: ClassVar[tuple[str, ...]]  # `metrics.report` when the project file names none

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_target(self, target: str, column_type: str) -> None:
        """Raise ValueError if the target column's schema type does not suit the task."""
        if column_type not in self.target_types:
            raise ValueError(f"target {target!r} must have type {' or '.join(self.target_types)}")

    def check_metric(self, name: str) -> None:
        """Raise ValueError if the task has no metric `name`."""
        if name not in self.metrics:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(self.metrics))}")

    def metric(self, name: str) -> Metric:
        """The metric `name` (a config-checked name), with its direction."""
        return self.metrics[name]

    def score(self, names: list[str], y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
        """{name: value} of each named metric, in the order named (repeats computed once)."""
        return {name: self.metrics[name](y, p, w) for name in dict.fromkeys(names)}

    def slice_scores(self, batch: Mapping[str, np.ndarray], columns: list[str], names: list[str], y: np.ndarray,
                     p: np.ndarray, w: np.ndarray | None) -> SliceScores:
        """{column: {value: {metric: score, "rows": n}}} for every value of each of `batch`'s `columns`."""
        return slice_scores(batch, columns, self.score, names, y, p, w)

    @abstractmethod
    def baseline(self, train: Mapping[str, np.ndarray], y_train: np.ndarray, holdout: Mapping[str, np.ndarray],
                 group_by: list[str]) -> np.ndarray:
        """The naive baseline's predictions for the holdout batch (n_holdout,), in the encoded space of
        `y_train` (n_train,), learnt per `group_by` group of the training batch."""

    @abstractmethod
    def check_estimator(self, estimator: Any, algorithm: str, file: str | None) -> None:
        """Raise ConfigError (key `model.algorithm`) if `estimator` cannot be fitted for this task."""

    @abstractmethod
    def answer(self, pred: np.ndarray, one: bool) -> dict[str, Any]:
        """The service's answer fields for predictions `pred` (n,): one record's, or a list's."""

    @abstractmethod
    def output_type(self) -> pa.DataType:
        """The Arrow type of one prediction in the prediction store (its `output` column)."""

    @abstractmethod
    def residual(self, spec: Mapping[str, Any], actual: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Per-row error (n,) whose drift and bias per segment the monitoring checks watch."""


class Regression(Task):
    """A numeric target predicted by a regressor, scored by error metrics, answered as one float.

    The estimator fits the target as the feature spec's `target_transform` encodes it (`forward_target`,
    `FeaturePlan.inverse_target` in features/transforms.py: that code travels inside every release).
    """

    name = "regression"
    target_types = ("int", "float")
    metrics = METRICS
    default_metric = "rmse"
    default_report = ("rmse", "mae", "r2")

    def baseline(self, train: Mapping[str, np.ndarray], y_train: np.ndarray, holdout: Mapping[str, np.ndarray],
                 group_by: list[str]) -> np.ndarray:
        return naive_baseline(train, y_train, holdout, group_by)

    def check_estimator(self, estimator: Any, algorithm: str, file: str | None) -> None:
        # By scikit-learn's own estimator tags: a classifier would be fitted on the target and scored as if
        # it were a regressor.
        from sklearn.base import is_classifier, is_regressor

        if not is_regressor(estimator):
            kind = "a classifier" if is_classifier(estimator) else "not a regressor"
            raise ConfigError(f"{algorithm} is {kind}; only regressors are supported for now (there is no "
                              "classification yet): use 'lightgbm' or a scikit-learn regressor such as "
                              "sklearn.ensemble.HistGradientBoostingRegressor", file=file, key="model.algorithm")

    def answer(self, pred: np.ndarray, one: bool) -> dict[str, Any]:
        return {"prediction": float(pred[0])} if one else {"predictions": pred}

    def output_type(self) -> pa.DataType:
        import pyarrow as pa

        return pa.float64()

    def residual(self, spec: Mapping[str, Any], actual: np.ndarray, pred: np.ndarray) -> np.ndarray:
        # In model space, where the estimator's errors are symmetric (log units under log1p).
        return forward_target(spec, actual) - forward_target(spec, pred)


REGRESSION = Regression()
TASKS: dict[str, Task] = {t.name: t for t in (REGRESSION,)}


def task_named(name: Any) -> Task:
    """The task called `name` (the `task:` key); ValueError naming the known ones otherwise."""
    if isinstance(name, Task):
        return name
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]
