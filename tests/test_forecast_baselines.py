"""Honest baselines for forecasting (issue 17): a model must beat each series' own last value and its value one
season back, not only a group mean; and forecast totals are reported (and gated) against actual totals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cd4ml.config import Frequency
from cd4ml.errors import ConfigError
from cd4ml.evaluate.baseline import history_lags, lagged_mean
from cd4ml.features.transforms import time_steps
from helpers import cli, edit_yaml, make_csv_project

REGIONS = ["north", "south", "east"]
DAYS = 200
HOLDOUT_DAYS = 28


# -- the parts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("times", "frequency", "steps"), [
    (np.array(["2024-03-01", "2024-03-02", "2024-03-09"], dtype="datetime64[D]"), "1D", [0, 1, 8]),
    (np.array(["2024-03-01T00:00", "2024-03-01T00:30", "2024-03-01T02:00"], dtype="datetime64[us]"), "30min",
     [0, 1, 4]),
    (np.array(["2024-03-01T23:00", "2024-03-02T00:00"], dtype="datetime64[us]"), "1h", [0, 1]),
    (np.array(["2023-12-01", "2024-01-01", "2024-03-01"], dtype="datetime64[D]"), "1MS", [0, 1, 3]),
    (np.array(["2024-03-03", "2024-03-04", "2024-03-10", "2024-03-11"], dtype="datetime64[D]"), "1W",
     [0, 1, 1, 2]),  # Sunday, then the Monday that starts the next week
    (np.array([2018, 2019, 2021]), "1YS", [0, 1, 3]),
    (np.array([2018, 2020, 2022]), "2YS", [0, 1, 2]),
])
def test_time_steps_count_the_grid(times: np.ndarray, frequency: str, steps: list[int]) -> None:
    step = Frequency.parse(frequency)
    got = time_steps(times, step.count, step.unit)
    assert (got - got[0]).tolist() == steps


def test_history_lags_never_read_nearer_than_the_horizon() -> None:
    assert history_lags("last_value", 1, 7, 7) == [1]
    assert history_lags("last_value", 3, 7, 7) == [3]
    assert history_lags("seasonal_naive", 1, 7, 7) == [7]
    assert history_lags("seasonal_naive", 8, 7, 7) == [14]  # whole seasons past the horizon
    assert history_lags("rolling_mean", 2, None, 3) == [2, 3, 4]


def test_lagged_mean_reads_each_series_own_past_and_is_nan_without_one() -> None:
    keys = [np.array(["a", "a", "a", "b", "b", "a"])]
    steps = np.array([0, 1, 2, 0, 2, 2])
    y = np.array([1.0, 2.0, 3.0, 10.0, 30.0, 5.0])  # a's step 2 is held twice: it counts as 4.0
    query_keys, query_steps = [np.array(["a", "b", "b", "c"])], np.array([3, 1, 3, 1])
    got = lagged_mean(keys, steps, y, query_keys, query_steps, [1])
    np.testing.assert_array_equal(got, [4.0, 10.0, 30.0, np.nan])
    got = lagged_mean(keys, steps, y, query_keys, query_steps, [1, 2, 3])
    np.testing.assert_array_equal(got, [(4.0 + 2.0 + 1.0) / 3, 10.0, (30.0 + 10.0) / 2, np.nan])
    # One series (no key columns): the steps alone.
    np.testing.assert_array_equal(lagged_mean([], np.array([0, 1]), np.array([1.0, 2.0]), [], np.array([2]), [1]),
                                  [2.0])


# -- the project file ----------------------------------------------------------------------------------------

def _walk_csv(seed: int = 11) -> str:
    """Daily values of three regions, each a random walk around its own level: yesterday's value knows more than
    any calendar feature."""
    rng = np.random.default_rng(seed)
    days = np.datetime64("2024-01-01") + np.arange(DAYS)
    rows = ["t,region,y"]
    for i, region in enumerate(REGIONS):
        level = 100.0 + 50 * i + np.cumsum(rng.normal(0, 3, DAYS))
        rows += [f"{day},{region},{value:.3f}" for day, value in zip(days, level)]
    return "\n".join(rows) + "\n"


def _walk_project(root: Path, **changes: Any) -> Path:
    columns = {"t": {"type": "date"}, "region": {"type": "str"}, "y": {"type": "float"}}
    settings = {"schema__keys": ["t", "region"], "split": {"holdout_days": HOLDOUT_DAYS},
                "features": {"calendar": ["dayofweek"], "categorical": ["region"], "numeric": ["dayofweek"]},
                "acceptance": {"latency_p99_ms": 1000}, "baseline__group_by": ["region"],
                "forecast": {"series": ["region"], "frequency": "1D"},
                "model__params": {"n_estimators": 30, "min_child_samples": 5, "n_jobs": 1}, **changes}
    return make_csv_project(root, _walk_csv(), columns, **settings)


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"forecast": None, "baseline__kind": ["group_mean", "last_value"]}, "baseline.kind", "forecast:"),
    ({"forecast__series": ["nowhere"]}, "forecast.series", "nowhere"),
    ({"forecast__series": ["y"]}, "forecast.series", "label"),
    ({"schema__columns__region": {"type": "str", "nullable": True}}, "forecast.series", "nullable"),
    ({"forecast__frequency": "1h"}, "forecast.frequency", "holds dates"),
    ({"forecast__frequency": "daily"}, "forecast.frequency", "not a time step"),
    ({"forecast__frequency": "0D"}, "forecast.frequency", "not a time step"),
    ({"forecast__horizon": 0}, "forecast.horizon", "greater than or equal to 1"),
    ({"forecast__horizon": 10**30}, "forecast.horizon", "less than or equal to 100000"),
    ({"baseline__window": 10**6}, "baseline.window", "less than or equal to 1000"),
    ({"baseline__kind": ["last_value", "last_value"]}, "baseline.kind", "once"),
    ({"baseline__kind": ["median"]}, "baseline.kind", "group_mean"),
    ({"forecast__frequency": "1W", "baseline__kind": ["seasonal_naive"], "baseline__season": 0}, "baseline.season",
     "greater than 0"),
    ({"forecast__frequency": "7D", "baseline__kind": ["seasonal_naive"]}, "baseline.season", "no default season"),
    ({"acceptance__bias_tolerance": -0.1}, "acceptance.bias_tolerance", "greater than 0"),
    ({"split__backtest": {"folds": 3}}, "split.backtest", "need a step"),
    ({"split__backtest": {"folds": 3, "step": "fortnight"}}, "split.backtest.step", "not a time step"),
    ({"acceptance__every_fold": True}, "acceptance.every_fold", "split.backtest.folds"),
])
def test_bad_forecast_settings_name_their_key(tmp_path: Path, changes: dict[str, Any], key: str, words: str) -> None:
    from cd4ml.config import load_project

    root = _walk_project(tmp_path / "p", **changes)
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert (err.value.key or "").startswith(key) and words in str(err.value), str(err.value)


def test_history_baselines_fit_regression_only(tmp_path: Path) -> None:
    from cd4ml.config import load_project

    root = make_csv_project(tmp_path / "c", "t,region,y\n2024-01-01,north,1\n",
                            {"t": {"type": "date"}, "region": {"type": "str"}, "y": {"type": "bool"}},
                            task="binary", forecast={"series": ["region"], "frequency": "1D"},
                            baseline__kind=["group_mean", "last_value"])
    with pytest.raises(ConfigError, match="task: regression"):
        load_project(root)
    edit_yaml(root, baseline__kind=None)  # the default for a classifier: the class prior alone
    assert load_project(root).config.baseline_kinds == ["group_mean"]


def test_a_forecast_gets_the_history_baselines_by_default(tmp_path: Path) -> None:
    from cd4ml.config import load_project

    root = _walk_project(tmp_path / "p")
    assert load_project(root).config.baseline_kinds == ["group_mean", "last_value", "seasonal_naive"]
    assert load_project(root).config.baseline_season == 7
    edit_yaml(root, forecast__frequency="1YS", time_column="t")
    edit_yaml(root, schema__columns__t={"type": "int"}, split={"holdout_periods": 1}, features__calendar=[],
              features__numeric=[])
    cfg = load_project(root).config
    assert cfg.baseline_kinds == ["group_mean", "last_value"]  # years have no season to repeat


# -- a run -------------------------------------------------------------------------------------------------

def _holdout(csv: str) -> tuple[np.ndarray, np.ndarray]:
    """The walk as (regions, days) values and the index of the first holdout day."""
    lines = csv.strip().splitlines()[1:]
    y = np.array([float(line.split(",")[2]) for line in lines]).reshape(len(REGIONS), DAYS)
    return y, DAYS - HOLDOUT_DAYS


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _walk_project(tmp_path_factory.mktemp("walk") / "regions")
    cli(root, "data", "ingest", check=0)
    return root


def test_a_model_that_loses_to_yesterdays_value_is_rejected_and_each_baseline_is_shown(walk: Path) -> None:
    y, first = _holdout(_walk_csv())
    hold = y[:, first:]
    out = json.loads(cli(walk, "run", "--json", check=3).stdout)
    base = out["baselines"]
    assert list(base) == ["group_mean", "last_value", "seasonal_naive"]
    # Computed here from the CSV alone: yesterday's value, and the value a week back, per region.
    assert base["last_value"]["rmse"] == pytest.approx(_rmse(hold, y[:, first - 1:-1]), rel=1e-9)
    assert base["seasonal_naive"]["rmse"] == pytest.approx(_rmse(hold, y[:, first - 7:-7]), rel=1e-9)
    means = y[:, :first].mean(axis=1, keepdims=True)
    assert base["group_mean"]["rmse"] == pytest.approx(_rmse(hold, np.broadcast_to(means, hold.shape)), rel=1e-9)
    assert out["baseline"] == base["last_value"]  # the strongest one
    beats = next(c for c in out["gate"]["checks"] if c["name"] == "beats_baseline")
    assert not beats["passed"] and "the last value baseline's" in beats["reason"]
    assert 0.5 < out["bias"] < 1.5

    table = cli(walk, "run", "--force", check=3).stdout
    header = next(line for line in table.splitlines() if "metric" in line and "model" in line)
    assert [w in header for w in ("group mean", "last value", "seasonal naive")] == [True] * 3
    assert "sum of predictions / sum of actuals on the holdout" in table
    # The README shows this run: its rows are this output.
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("┃ metric", "│ rmse", "│ mae", "│ r2"))]
    assert len(rows) == 4 and all(row in readme for row in rows), rows


def test_a_longer_horizon_reads_further_back_and_bias_is_enforced_when_asked(walk: Path) -> None:
    y, first = _holdout(_walk_csv())
    out = json.loads(cli(walk, "run", "--json", "--set", "forecast.horizon=9", "--set",
                         "acceptance.bias_tolerance=0.0001", check=3).stdout)
    hold = y[:, first:]
    assert out["baselines"]["last_value"]["rmse"] == pytest.approx(_rmse(hold, y[:, first - 9:-9]), rel=1e-9)
    # Nine days ahead, the same weekday is two weeks back.
    assert out["baselines"]["seasonal_naive"]["rmse"] == pytest.approx(_rmse(hold, y[:, first - 14:-14]), rel=1e-9)
    bias = next(c for c in out["gate"]["checks"] if c["name"] == "bias")
    assert not bias["passed"] and bias["value"] == out["bias"] and "overall" in bias["reason"]


def test_a_series_with_a_repeated_time_step_is_refused_at_ingest(tmp_path: Path) -> None:
    from cd4ml.config import load_project

    root = _walk_project(tmp_path / "p", schema__keys=[])
    assert load_project(root).config.schema_.keys == ["t", "region"]  # one row per series and step
    lines = _walk_csv().splitlines()
    (root / "data.csv").write_text("\n".join([*lines, lines[5].replace(lines[5].split(",")[2], "1.0")]) + "\n")
    out = cli(root, "data", "ingest", check=4)
    text = " ".join((out.stdout + out.stderr).split())
    assert "repeats the key (t, region)" in text and lines[5].split(",")[0] in text and "north" in text, text
    assert not (root / ".cd4ml" / "data").exists() or not any((root / ".cd4ml" / "data").rglob("*.parquet"))
    edit_yaml(root, schema__keys=["t"])
    with pytest.raises(ConfigError, match="one row per series and time step"):
        load_project(root)


@pytest.mark.parametrize(("changes", "words"), [
    ({"model__params__objective": "poisson", "model__target_transform": "log1p"}, "target_transform: none"),
    ({"model__params__objective": "tweedie"}, "min: 0"),
])
def test_a_count_objective_needs_the_target_on_its_own_scale_and_never_negative(
        tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    from cd4ml.config import load_project

    root = _walk_project(tmp_path / "p", **changes)
    with pytest.raises(ConfigError, match=words):
        load_project(root)
    edit_yaml(root, model__target_transform="none", schema__columns__y={"type": "float", "min": 0})
    assert load_project(root).config.model.params["objective"] in ("poisson", "tweedie")


def test_a_backtest_scores_each_earlier_origin_and_every_fold_can_be_required(walk: Path) -> None:
    y, _ = _holdout(_walk_csv())
    out = json.loads(cli(walk, "run", "--json", "--set", "split.backtest={folds: 3, step: 1W}",
                         "--set", "acceptance.every_fold=true", check=3).stdout)
    folds = out["backtest"]
    assert [f["steps_back"] for f in folds] == [0, 1, 2]
    assert folds[0]["metrics"] == out["metrics"] and folds[0]["baselines"] == out["baselines"]
    # The data ends on Thursday 2024-07-18; weeks run from Monday: fold 1 ends on Sunday 07-14, fold 2 on 07-07.
    assert [(f["first"], f["last"]) for f in folds] == [("2024-06-21", "2024-07-18"), ("2024-06-17", "2024-07-14"),
                                                        ("2024-06-10", "2024-07-07")]
    for fold, last in zip(folds[1:], (DAYS - 5, DAYS - 12)):  # each fold's last day, as a column of y
        start = last - HOLDOUT_DAYS + 1
        hold = y[:, start:last + 1]
        assert fold["rows"] == hold.size
        assert fold["baselines"]["last_value"]["rmse"] == pytest.approx(_rmse(hold, y[:, start - 1:last]), rel=1e-9)
    check = next(c for c in out["gate"]["checks"] if c["name"] == "backtest")
    assert not check["passed"] and "fold 2 (2024-06-10..2024-07-07)" in check["reason"]
