"""The task contract: `task: regression` is today's cd4ml, unchanged, and the only task there is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, mean_squared_log_error, r2_score

from cd4ml.config import load_project, parse_overrides
from cd4ml.errors import ConfigError
from cd4ml.task import REGRESSION
from helpers import GOOD_REQUEST, Service, cli, edit_yaml, train


@pytest.mark.slow
def test_task_regression_is_the_project_without_the_key(shop: Path) -> None:
    first = train(shop)
    edit_yaml(shop, task="regression")
    # The same resolved config, so the same run: skipped as a repeat with the same results.
    again = train(shop)
    assert again.skipped_as == first.run_id
    assert again.metrics == first.metrics and again.baseline == first.baseline
    with Service(shop) as service:
        service.wait_until("/ready", 200)
        one = service.client.post("/predict", json=GOOD_REQUEST).json()
        many = service.client.post("/predict", json=[GOOD_REQUEST, GOOD_REQUEST]).json()
    assert set(one) == {"request_id", "model_version", "prediction", "fallback"}
    assert isinstance(one["prediction"], float) and one["fallback"] is False
    assert set(many) == {"request_id", "model_version", "predictions", "fallback"}
    assert many["predictions"] == [one["prediction"]] * 2 and many["fallback"] == [False, False]


def test_another_task_is_a_config_error_naming_the_key(shop: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(shop, parse_overrides(["task=classification"]))
    assert info.value.exit_code == 2 and info.value.key == "task"
    assert "unknown task 'classification'; known: binary, multiclass, regression" in str(info.value)
    edit_yaml(shop, task="classification")
    proc = cli(shop, "run", check=2)
    assert "task: unknown task 'classification'" in proc.stderr + proc.stdout


def test_regression_metrics_equal_scikit_learns() -> None:
    rng = np.random.default_rng(16)
    y, p = rng.gamma(2.0, 3.0, 500), rng.gamma(2.0, 3.0, 500)
    w = rng.choice([1.0, 1.25], 500)
    scores = REGRESSION.score(["rmse", "mae", "r2", "nwrmsle"], y, p, w)
    assert scores["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))  # unweighted metrics ignore w
    assert scores["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert scores["r2"] == pytest.approx(r2_score(y, p))
    assert scores["nwrmsle"] == pytest.approx(np.sqrt(mean_squared_log_error(y, p, sample_weight=w)))
    assert REGRESSION.metric("r2").greater_is_better and not REGRESSION.metric("rmse").greater_is_better
    assert REGRESSION.default_metric in REGRESSION.default_report


def test_regression_baseline_is_the_training_group_mean() -> None:
    rng = np.random.default_rng(3)
    train_batch = {"store": rng.integers(0, 4, 200)}
    y_train = rng.normal(10, 2, 200)
    holdout = {"store": np.array([0, 1, 2, 3, 9])}  # store 9 never trained: the overall mean
    means = pd.Series(y_train).groupby(train_batch["store"]).mean()
    expected = [*means.loc[[0, 1, 2, 3]], y_train.mean()]
    np.testing.assert_allclose(REGRESSION.baseline(train_batch, y_train, holdout, ["store"]), expected)
