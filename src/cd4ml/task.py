"""The task contract: what kind of problem a project solves, asked by every stage.

A `Task` says which schema types its target may have, which metrics exist (each with its direction)
and which is the default, the naive baseline, which estimators fit it, what the service answers for
n predictions and how the prediction store keeps them, and the residual the monitoring checks watch.
The project's task is `ProjectConfig.task` (the `task:` key): `Regression`, or a `Classification`
(binary or multiclass) configured with the target's classes and the decision threshold. A release
keeps its task's `spec()`, so a service answers in the terms of the release it runs (`task_from_spec`).

Shapes: `y` (n,) is `encode(actuals)`: regression floats, classification class indices; `p` is the
predictions: regression (n,) in target units, classification (n, k) class probabilities (columns in
`classes` order, rows summing to 1); `w` (n,) optional non-negative weights; a batch maps column names
to 1-D arrays of length n.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cd4ml.errors import ConfigError
from cd4ml.evaluate.baseline import naive_baseline, slice_scores
from cd4ml.evaluate.classification import class_prior_baseline, classification_metrics, decide
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
            raise ValueError(f"target {target!r} must have type {' or '.join(self.target_types)} for task "
                             f"{self.name}")

    @abstractmethod
    def encode(self, values: np.ndarray) -> np.ndarray:
        """Actual target values (n,) as the metrics and the estimator take them; ValueError naming the
        first value the task cannot take and its position."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """What a release keeps of its task (JSON), for `task_from_spec`."""

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

    def encode(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name}

    def baseline(self, train: Mapping[str, np.ndarray], y_train: np.ndarray, holdout: Mapping[str, np.ndarray],
                 group_by: list[str]) -> np.ndarray:
        return naive_baseline(train, y_train, holdout, group_by)

    def check_estimator(self, estimator: Any, algorithm: str, file: str | None) -> None:
        # By scikit-learn's own estimator tags: a classifier would be fitted on the target and scored as if
        # it were a regressor.
        from sklearn.base import is_classifier, is_regressor

        if not is_regressor(estimator):
            kind = "a classifier" if is_classifier(estimator) else "not a regressor"
            raise ConfigError(f"{algorithm} is {kind}, but the task is regression: use 'lightgbm' or a "
                              "scikit-learn regressor such as sklearn.ensemble.HistGradientBoostingRegressor, "
                              "or set task: binary or multiclass", file=file, key="model.algorithm")

    def answer(self, pred: np.ndarray, one: bool) -> dict[str, Any]:
        return {"prediction": float(pred[0])} if one else {"predictions": pred}

    def output_type(self) -> pa.DataType:
        import pyarrow as pa

        return pa.float64()

    def residual(self, spec: Mapping[str, Any], actual: np.ndarray, pred: np.ndarray) -> np.ndarray:
        # In model space, where the estimator's errors are symmetric (log units under log1p).
        return forward_target(spec, actual) - forward_target(spec, pred)


Label = Any  # a class value in the target's Python type: bool, int or str

_LABEL_TYPES = {"bool": "bool_", "int": "int64", "str": "string"}  # target schema type -> pyarrow type name
_THRESHOLD_FREE = ("auc", "logloss", "brier", "ece")


class Classification(Task):
    """A target of k declared classes, predicted as class probabilities (n, k) and scored by
    classification metrics; the decided class is binary `P(classes[1]) >= threshold`, else the most
    probable one.

    `TASKS` holds the unconfigured kinds (no classes yet: enough to check metric names); the project's
    config makes the configured one with `configured`.
    """

    target_types = ("bool", "int", "str")

    def __init__(self, name: str, classes: tuple[Label, ...] = (), threshold: float = 0.5,
                 label_type: str = "str") -> None:
        self.name = name  # type: ignore[misc]  # per instance: "binary" or "multiclass"
        self.classes = tuple(classes)
        self.threshold = float(threshold)
        self.label_type = label_type
        self.metrics = classification_metrics(self.threshold)  # type: ignore[misc]
        self.default_metric = "auc"  # type: ignore[misc]
        self.default_report = (("auc", "logloss", "brier", "ece", "accuracy") if name == "binary"  # type: ignore[misc]
                               else ("auc", "logloss", "brier", "accuracy", "balanced_accuracy"))

    def __repr__(self) -> str:
        return f"Classification({self.name!r}, classes={self.classes!r}, threshold={self.threshold})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Classification) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash((self.name, self.classes, self.threshold, self.label_type))

    @property
    def thresholded_metrics(self) -> tuple[str, ...]:
        """Metrics of decided classes (they depend on the threshold)."""
        return tuple(m for m in self.metrics if m not in _THRESHOLD_FREE)

    def configured(self, target: str, column_type: str, categories: list[Any] | None,
                   threshold: float) -> "Classification":
        """This kind for a target column of schema type `column_type`; ValueError naming what is wrong."""
        self.check_target(target, column_type)
        if column_type == "bool":
            classes: tuple[Label, ...] = (False, True)
        elif not categories:
            raise ValueError(f"target {target!r} needs its classes: list them as 'categories' under "
                             f"schema.columns.{target} (the order is the order of the probabilities)")
        else:
            classes = tuple(categories)
        if self.name == "binary" and len(classes) != 2:
            raise ValueError(f"task binary needs exactly 2 classes; target {target!r} has {len(classes)}: "
                             "use task: multiclass")
        if self.name == "multiclass" and len(classes) < 3:
            raise ValueError(f"task multiclass needs at least 3 classes; target {target!r} has "
                             f"{len(classes)}: use task: binary")
        return Classification(self.name, classes, threshold, column_type)

    def with_threshold(self, threshold: float) -> "Classification":
        """This task deciding binary rows at `threshold` (one chosen on training data)."""
        return Classification(self.name, self.classes, threshold, self.label_type)

    @property
    def class_names(self) -> list[str]:
        """The classes as JSON object keys: `false`/`true` for a bool target, else their text."""
        return [("true" if c else "false") if isinstance(c, bool) else str(c) for c in self.classes]

    def encode(self, values: np.ndarray) -> np.ndarray:
        # The feature code's encoding: the one every release carries for its estimator's target.
        return forward_target({"task": self.spec()}, values)

    def decide(self, p: np.ndarray) -> np.ndarray:
        """Decided class indices (n,) from probabilities (n, k)."""
        return decide(p, self.threshold)

    def labels(self, idx: np.ndarray) -> list[Label]:
        """Class values of indices (n,)."""
        return [self.classes[i] for i in np.asarray(idx, dtype=np.int64).tolist()]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "threshold": self.threshold,
                "label_type": self.label_type}

    def baseline(self, train: Mapping[str, np.ndarray], y_train: np.ndarray, holdout: Mapping[str, np.ndarray],
                 group_by: list[str]) -> np.ndarray:
        return class_prior_baseline(train, y_train, holdout, group_by, len(self.classes))

    def check_estimator(self, estimator: Any, algorithm: str, file: str | None) -> None:
        from sklearn.base import is_classifier, is_regressor

        if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
            kind = ("a regressor" if is_regressor(estimator) else "a classifier without predict_proba"
                    if is_classifier(estimator) else "not a classifier")
            raise ConfigError(f"{algorithm} is {kind}, but the task is {self.name} classification: use "
                              "'lightgbm' or a scikit-learn classifier with predict_proba such as "
                              "sklearn.ensemble.HistGradientBoostingClassifier", file=file, key="model.algorithm")

    def answer(self, pred: np.ndarray, one: bool) -> dict[str, Any]:
        names = self.class_names
        labels = self.labels(self.decide(pred))
        probabilities = [dict(zip(names, row)) for row in np.asarray(pred, dtype=np.float64).tolist()]
        if one:
            return {"prediction": labels[0], "probabilities": probabilities[0]}
        return {"predictions": labels, "probabilities": probabilities}

    def output_type(self) -> pa.DataType:
        import pyarrow as pa

        return getattr(pa, _LABEL_TYPES[self.label_type])()

    def residual(self, spec: Mapping[str, Any], actual: np.ndarray, pred: np.ndarray) -> np.ndarray:
        # The probability the model did not give to what happened: 0 for a sure hit, 1 for a sure miss.
        y = np.asarray(actual).astype(np.int64)
        return 1.0 - np.asarray(pred, dtype=np.float64)[np.arange(len(y)), y]


REGRESSION = Regression()
TASKS: dict[str, Task] = {t.name: t for t in (REGRESSION, Classification("binary"), Classification("multiclass"))}


def task_named(name: Any) -> Task:
    """The task called `name` (the `task:` key), unconfigured; ValueError naming the known ones otherwise."""
    if isinstance(name, Task):
        return name
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_from_spec(spec: Mapping[str, Any] | None) -> Task:
    """The task a release kept (`Task.spec()`); releases from before tasks were kept are regression."""
    if not spec or spec["name"] == REGRESSION.name:
        return REGRESSION
    return Classification(spec["name"], tuple(spec["classes"]), spec["threshold"], spec["label_type"])
