"""The classification tasks' contract: metrics equal scikit-learn's, the class-prior baseline, the
decision, the answer, and the project-file keys that configure them (each mistake names its key)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, brier_score_loss, f1_score, log_loss,
                             precision_score, recall_score, roc_auc_score)

from cd4ml.config import load_project, parse_overrides
from cd4ml.errors import ConfigError
from cd4ml.evaluate.classification import confusion_matrix, ece
from cd4ml.task import REGRESSION, Classification, task_from_spec

BINARY = Classification("binary", (False, True), 0.5, "bool")
COLORS = Classification("multiclass", ("red", "green", "blue"), 0.5, "str")


def _draws(k: int, n: int = 600, seed: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), n)
    y = np.array([rng.choice(k, p=row) for row in p])  # calibrated by construction
    return y, p


def test_binary_metrics_equal_scikit_learns() -> None:
    y, p = _draws(2)
    task = BINARY.with_threshold(0.3)
    s = task.score(list(task.metrics), y, p)
    decided = (p[:, 1] >= 0.3).astype(int)
    assert s["auc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert s["logloss"] == pytest.approx(log_loss(y, p))
    assert s["brier"] == pytest.approx(brier_score_loss(y, p[:, 1]))
    assert s["accuracy"] == pytest.approx(accuracy_score(y, decided))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, decided))
    assert s["precision"] == pytest.approx(precision_score(y, decided))
    assert s["recall"] == pytest.approx(recall_score(y, decided))
    assert s["f1"] == pytest.approx(f1_score(y, decided))
    greater = {name for name, m in task.metrics.items() if m.greater_is_better}
    assert greater == {"auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1"}


def test_multiclass_metrics_equal_scikit_learns() -> None:
    y, p = _draws(3)
    s = COLORS.score(list(COLORS.metrics), y, p)
    decided = p.argmax(axis=1)
    assert s["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert s["logloss"] == pytest.approx(log_loss(y, p))
    assert s["brier"] == pytest.approx(np.mean(np.sum((p - np.eye(3)[y]) ** 2, axis=1)))
    assert s["accuracy"] == pytest.approx(accuracy_score(y, decided))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, decided))
    for name, fn in [("precision", precision_score), ("recall", recall_score), ("f1", f1_score)]:
        assert s[name] == pytest.approx(fn(y, decided, average="macro"))


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities() -> None:
    y, p = _draws(2, n=20000)
    assert ece(y, p, np.ones(len(y))) < 0.02
    sharp = np.where(p[:, 1:] >= 0.5, 0.99, 0.01)  # every row claimed nearly sure
    assert ece(y, np.hstack([1 - sharp, sharp]), np.ones(len(y))) > 0.2
    # By hand: bins [0.1, 0.2) holds 0.15 twice with one hit -> |0.3 - 1| / 2 rows... = 0.35
    y2, p1 = np.array([1, 0]), np.array([0.15, 0.15])
    assert ece(y2, np.column_stack([1 - p1, p1]), np.ones(2)) == pytest.approx(abs(0.15 - 0.5))


def test_baseline_is_the_class_prior_of_the_training_group() -> None:
    train = {"plan": np.array(["a", "a", "a", "b", "b"])}
    y_train = COLORS.encode(np.array(["red", "red", "blue", "green", "green"]))
    holdout = {"plan": np.array(["a", "b", "c"])}
    base = COLORS.baseline(train, y_train, holdout, ["plan"])
    np.testing.assert_allclose(base, [[2 / 3, 0, 1 / 3], [0, 1, 0], [2 / 5, 2 / 5, 1 / 5]])
    np.testing.assert_allclose(COLORS.baseline(train, y_train, holdout, []), [[2 / 5, 2 / 5, 1 / 5]] * 3)


def test_decision_answer_and_stored_type() -> None:
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert BINARY.decide(p).tolist() == [0, 1]
    assert BINARY.with_threshold(0.25).decide(p).tolist() == [1, 1]
    assert BINARY.answer(p[:1], True) == {"prediction": False, "probabilities": {"false": 0.7, "true": 0.3}}
    many = COLORS.answer(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), False)
    assert many["predictions"] == ["blue", "red"]
    assert many["probabilities"][1] == {"red": 0.6, "green": 0.3, "blue": 0.1}
    assert str(COLORS.output_type()) == "string" and str(BINARY.output_type()) == "bool"
    assert confusion_matrix(np.array([0, 1, 1]), p[[0, 1, 0]], 0.5).tolist() == [[1, 0], [1, 1]]
    np.testing.assert_allclose(BINARY.residual({}, np.array([0, 0]), p), [0.3, 0.8])


def test_unknown_class_is_named_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"value 'purple' at position 2 is not one of the classes"):
        COLORS.encode(np.array(["red", "blue", "purple"]))


def test_task_round_trips_through_a_release_spec() -> None:
    for task in (BINARY.with_threshold(0.37), COLORS):
        assert task_from_spec(task.spec()) == task
    assert task_from_spec(None) is REGRESSION and task_from_spec(REGRESSION.spec()) is REGRESSION


def _binary_overrides(**extra: str) -> dict:
    base = ["task=binary", "schema.columns.onpromotion.categories=[0, 1]", "target=onpromotion",
            "oracle_column=null", "features.numeric=[perishable]", "features.target_encodings=[[store_nbr, item_nbr]]", "metrics.weight=null",
            "acceptance.thresholds={}", "metrics={}", "model.target_transform=none", "model.clip_min=null"]
    return parse_overrides(base + [f"{k}={v}" for k, v in extra.items()])


def test_a_binary_project_takes_its_classes_and_defaults(shop: Path) -> None:
    cfg = load_project(shop, _binary_overrides(**{"metrics": "{}", "decision.threshold": "0.3"})).config
    assert cfg.task == Classification("binary", (0, 1), 0.3, "int")
    assert cfg.metrics.primary == "auc" and cfg.metrics.report == ["auc", "logloss", "brier", "ece", "accuracy"]


@pytest.mark.parametrize(("override", "key", "says"), [
    ({"decision.threshold": "1.5"}, "decision.threshold", "strictly between 0 and 1"),
    ({"decision.threshold": "{maximize: auc}"}, "", "must be a metric of decided classes"),
    ({"schema.columns.onpromotion.categories": "[0, 1, 2]"}, "", "needs exactly 2 classes"),
    ({"schema.columns.onpromotion.categories": "null"}, "", "list them as 'categories'"),
    ({"model.calibration": "platt"}, "model.calibration", "isotonic"),
    ({"acceptance.also_no_worse": "[recall]"}, "", "also_no_worse names metric 'recall'"),
    ({"metrics.primary": "rmse"}, "metrics", "unknown metric 'rmse'"),
    ({"model.target_transform": "log1p"}, "", "regression targets only"),
])
def test_classification_config_mistakes_name_their_key(shop: Path, override: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(shop, _binary_overrides(**override))
    assert info.value.exit_code == 2 and says in str(info.value)
    if key:
        assert info.value.key is not None and info.value.key.startswith(key)


def test_classification_keys_under_regression_are_refused(shop: Path) -> None:
    for override, key in [("decision.threshold=0.4", "decision"), ("model.calibration=isotonic", "model.calibration")]:
        with pytest.raises(ConfigError, match=f"{key} applies to classification"):
            load_project(shop, parse_overrides([override]))
    with pytest.raises(ConfigError, match="must have type bool or int or str for task binary"):
        load_project(shop, parse_overrides(["task=binary", "metrics={}"]))  # a float target is no class
