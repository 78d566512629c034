"""A user's own data, from the project file and the command line: yearly and half-hourly time grids,
holdouts that do not fit the data, algorithms that are not regressors, and what the terminal shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cd4ml.config import load_project
from cd4ml.data.table import TrainingTable
from cd4ml.features import transforms as T
from cd4ml.train.split import time_split
from helpers import Service, cli, edit_yaml, make_csv_project

REGIONS = ["north", "south", "east"]


def _yearly_csv(first: int = 1990, last: int = 2020, seed: int = 5) -> str:
    """GDP-like values per region and whole year: a trend by year, a level by region."""
    rng = np.random.default_rng(seed)
    rows = ["year,region,x,y"]
    for year in range(first, last + 1):
        for i, region in enumerate(REGIONS):
            x = rng.uniform(0, 10)
            rows.append(f"{year},{region},{x:.3f},{100 + 3 * (year - first) + 20 * i + 2 * x + rng.normal():.3f}")
    return "\n".join(rows) + "\n"


def _yearly_project(root: Path, **changes: object) -> Path:
    columns = {"year": {"type": "int"}, "region": {"type": "str", "categories": REGIONS},
               "x": {"type": "float"}, "y": {"type": "float"}}
    settings = {"time_column": "year", "schema__keys": ["year", "region"], "split": {"holdout_periods": 3},
                "features": {"categorical": ["region"], "numeric": ["year", "x"]},
                "model__params": {"n_estimators": 40, "min_child_samples": 2, "n_jobs": 1}, **changes}
    return make_csv_project(root, _yearly_csv(), columns, **settings)


def _half_hourly_csv(days: int = 28, seed: int = 3) -> str:
    """Demand on a half-hourly grid whose level follows the time of day."""
    rng = np.random.default_rng(seed)
    times = np.datetime64("2024-03-01T00:00") + np.arange(days * 48) * np.timedelta64(30, "m")
    slot = np.arange(days * 48) % 48
    y = 50 + 30 * np.sin(2 * np.pi * slot / 48) + rng.normal(0, 1, len(slot))
    return "t,y\n" + "\n".join(f"{str(t).replace('T', ' ')},{v:.3f}" for t, v in zip(times, y)) + "\n"


def _half_hourly_project(root: Path, **changes: object) -> Path:
    settings = {"schema__keys": ["t"], "features": {"calendar": ["slot", "minute"], "slot_minutes": 30,
                                                    "numeric": ["slot", "minute"]},
                "model__params": {"n_estimators": 60, "min_child_samples": 5, "n_jobs": 1}, **changes}
    return make_csv_project(root, _half_hourly_csv(), {"t": {"type": "datetime"}, "y": {"type": "float"}},
                            **settings)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- item 6: whole years as the time column -------------------------------------------------------------

@pytest.fixture(scope="module")
def yearly_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The yearly project ingested and trained once through the CLI: (project, `run --json`). Copied by
    tests that change it."""
    root = _yearly_project(tmp_path_factory.mktemp("yearly") / "gdp")
    cli(root, "data", "ingest", check=0)
    return root, json.loads(cli(root, "run", "--json", check=0).stdout)


def test_yearly_data_trains_on_its_years_and_holds_out_the_last_three(yearly_run: tuple[Path, dict[str, Any]]) -> None:
    root, out = yearly_run
    versions = json.loads(cli(root, "data", "versions", "--json", check=0).stdout)
    assert (versions[0]["time_min"], versions[0]["time_max"]) == ("1990", "2020")

    assert out["gate"]["passed"] and out["promoted"]
    assert out["metrics"]["rmse"] < out["baseline"]["rmse"] / 3  # the trend over the years is learned

    project = load_project(root)
    frame, _ = TrainingTable.for_project(project).read()
    train, holdout = time_split(frame, "year", project.config.split)
    assert sorted(holdout["year"].unique()) == [2018, 2019, 2020] and train["year"].max() == 2017


def test_yearly_model_is_served_and_monitored_by_year(yearly_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root = tmp_path / "gdp"
    shutil.copytree(yearly_run[0], root, symlinks=True)
    with Service(root) as service:
        good = service.client.post("/predict", json=[
            {"year": 2021, "region": "north", "x": 5.0}, {"year": 2021, "region": "east", "x": 5.0}])
        assert good.status_code == 200, good.text
        north, east = good.json()["predictions"]
        assert east > north + 10  # the regions' levels, 40 apart in the data
        wrong = service.client.post("/predict", json=[{"year": "2021-01-01", "region": "north", "x": 5.0}])
        assert wrong.status_code == 422 and "year" in wrong.text
    (root / "actuals.csv").write_text("year,region,y\n2021,north,200\n")
    cli(root, "feedback", "actuals.csv", check=0)
    report = json.loads(cli(root, "monitor", "--json", check=0).stdout)
    assert [(r["day"], r["predictions"]) for r in report["traffic"]] == [("2021-01-01", 2)]
    assert [(r["day"], r["rows"]) for r in report["accuracy"]] == [("2021-01-01", 1)]
    cli(root, "data", "refresh", check=0)  # the production row with its actual, through the same validation
    versions = json.loads(cli(root, "data", "versions", "--json", check=0).stdout)
    assert (versions[0]["origin"], versions[0]["time_max"]) == ("production", "2021")
    frame, _ = TrainingTable.for_project(load_project(root)).read()
    assert frame["year"].dtype == np.int64 and frame[frame["year"] == 2021]["region"].tolist() == ["north"]


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"split": {"holdout_days": 1095}}, "split.holdout_days", "holdout_periods: 3 holds out the last 3 years"),
    ({"schema__columns__year": {"type": "str"}}, "time_column", "month (2024-05), or int for whole years"),
    ({"features": {"holidays": {"country": "US"}, "numeric": ["x"]}}, "features.holidays", "holds years"),
    ({"features": {"calendar": ["hour"], "numeric": ["hour"]}}, "features.calendar", "needs a time of day"),
])
def test_settings_that_do_not_fit_a_year_column_exit_2_naming_the_key(tmp_path: Path, changes: dict, key: str,
                                                                      words: str) -> None:
    root = _yearly_project(tmp_path / "gdp", **changes)
    proc = cli(root, "data", "ingest", check=2)
    stderr = _one_line(proc.stderr)
    assert key in stderr and words in stderr and "cd4ml.yaml" in stderr
    assert "Traceback" not in stderr


def test_years_are_times_in_the_features_copied_into_releases() -> None:
    t = T.as_time(np.array([1999, 2024]))
    assert t.tolist() == T.as_time(np.array(["1999-01-01", "2024-01-01"])).tolist()
    assert T.calendar_part(t, "year").tolist() == [1999, 2024]


# -- item 8: holdouts that do not fit, and what the terminal shows ----------------------------------------

@pytest.mark.parametrize(("key", "value"), [("split.holdout_periods", 40), ("split.holdout_rows", 93)])
def test_a_holdout_longer_than_the_data_exits_2_naming_the_key(tmp_path: Path, key: str, value: int) -> None:
    root = _yearly_project(tmp_path / "gdp")  # 31 years, 93 rows
    cli(root, "data", "ingest", check=0)
    proc = cli(root, "run", "--set", "split=null", "--set", f"{key}={value}", check=2)
    stderr = _one_line(proc.stderr)
    assert f"cd4ml.yaml: {key}:" in stderr and "0 for training" in stderr and "1990 to 2020" in stderr, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr


def test_holdout_days_longer_than_the_data_exits_2(tmp_path: Path) -> None:
    root = _half_hourly_project(tmp_path / "power")
    cli(root, "data", "ingest", check=0)
    proc = cli(root, "run", "--set", "split.holdout_days=400", check=2)
    stderr = _one_line(proc.stderr)
    assert "cd4ml.yaml: split.holdout_days: holdout_days=400 puts 1,344 of the table's 1,344 rows" in stderr
    assert "choose a shorter holdout" in stderr


def _cli_piped(root: Path, *args: str, columns: str | None) -> subprocess.CompletedProcess:
    """The CLI with stdout a pipe, as in CI, with or without COLUMNS set."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "MLFLOW_TRACKING_URI")}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", *args], cwd=root, capture_output=True, text=True,
                          env=env)


def test_run_prints_tables_that_do_not_wrap_names_in_a_pipe(tmp_path: Path) -> None:
    root = _yearly_project(tmp_path / "gdp", slices=["region_of_the_country_as_reported"],
                           schema__columns__region_of_the_country_as_reported={"type": "str"},
                           **{"acceptance__slice_tolerance": 10.0})
    csv = (root / "data.csv").read_text().splitlines()
    (root / "data.csv").write_text("\n".join([csv[0] + ",region_of_the_country_as_reported"] +
                                             [line + "," + line.split(",")[1] + "_area" for line in csv[1:]]) + "\n")
    cli(root, "data", "ingest", check=0)
    proc = _cli_piped(root, "run", columns=None)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("slice:region_of_the_country_as_reported" in line for line in lines), proc.stdout
    assert max(len(line) for line in lines) > 80  # not laid out for an 80-column terminal
    # Stage seconds: a table with one row per stage and the total, not a Python dict.
    assert "{" not in proc.stdout and "Stage seconds" in proc.stdout
    stages = {line.split()[1]: float(line.split()[3]) for line in lines
              if line.startswith("│") and len(line.split()) == 5 and line.split()[3].replace(".", "").isdigit()}
    assert {"load", "features", "fit", "evaluate", "register", "gate"} <= set(stages), proc.stdout
    # Each row is rounded to 0.01 on its own, so the shown rows may miss the shown total by half a cent each.
    assert stages["total"] == pytest.approx(sum(v for k, v in stages.items() if k != "total"),
                                            abs=0.005 * len(stages) + 1e-9)

    narrow = _cli_piped(root, "run", "--force", columns="100")  # COLUMNS is honoured
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100
    assert "slice:region_of_the_country_as_reported" in narrow.stdout


# -- item 9: under task: regression, only regressors ------------------------------------------------------

NOT_REGRESSORS = {"sklearn.ensemble.HistGradientBoostingClassifier": "is a classifier",
                  "sklearn.linear_model.LogisticRegression": "is a classifier",
                  "sklearn.preprocessing.StandardScaler": "is not a regressor",
                  "sklearn.metrics.mean_squared_error": "is not an estimator class"}


def test_an_algorithm_that_is_not_a_regressor_is_refused_before_training(tmp_path: Path) -> None:
    root = _yearly_project(tmp_path / "gdp")
    cli(root, "data", "ingest", check=0)  # one project for every case: each is refused before it is used
    for algorithm, kind in NOT_REGRESSORS.items():
        edit_yaml(root, model={"algorithm": algorithm})
        stderr = _one_line(cli(root, "run", check=2).stderr)
        assert "cd4ml.yaml: model.algorithm:" in stderr and kind in stderr, (algorithm, stderr)
        assert "the task is regression" in stderr or "name a scikit-learn regressor class" in stderr, stderr
        assert "Traceback" not in stderr, (algorithm, stderr)
    assert not (root / ".cd4ml" / "mlartifacts").exists()  # nothing was ever trained or stored


def test_a_scikit_learn_regressor_is_still_accepted(tmp_path: Path) -> None:
    root = _yearly_project(tmp_path / "gdp", model={"algorithm": "sklearn.ensemble.HistGradientBoostingRegressor",
                                                    "params": {"max_iter": 30}})
    cli(root, "data", "ingest", check=0)
    out = json.loads(cli(root, "run", "--json", check=0).stdout)
    assert out["gate"]["passed"]


# -- item 10: half-hourly slots without code ---------------------------------------------------------------

def test_minute_and_slot_parts() -> None:
    t = T.as_time(np.array(["2024-01-01 00:00", "2024-01-01 00:29:59", "2024-01-01 00:30", "2024-01-01 13:45",
                            "2024-01-01 23:59:59"]))
    assert T.calendar_part(t, "minute").tolist() == [0, 29, 30, 45, 59]
    assert T.calendar_part(t, "slot", 30).tolist() == [0, 0, 1, 27, 47]
    assert T.calendar_part(t, "slot", 15).tolist() == [0, 1, 2, 55, 95]
    assert T.calendar_part(t, "slot", 1440).tolist() == [0, 0, 0, 0, 0]


def test_half_hourly_slots_need_no_code(tmp_path: Path) -> None:
    root = _half_hourly_project(tmp_path / "power")
    cli(root, "data", "ingest", check=0)
    out = json.loads(cli(root, "run", "--json", check=0).stdout)
    assert out["gate"]["passed"] and out["metrics"]["rmse"] < out["baseline"]["rmse"] / 5
    with Service(root) as service:
        answer = service.client.post("/predict", json=[{"t": "2024-04-01 06:00:00"}, {"t": "2024-04-01 18:00:00"}])
        assert answer.status_code == 200, answer.text
        six, eighteen = answer.json()["predictions"]
        assert six == pytest.approx(80, abs=5) and eighteen == pytest.approx(20, abs=5)  # 50 +- 30 sin


@pytest.mark.parametrize(("features", "key", "words"), [
    ({"calendar": ["slot"], "numeric": ["slot"]}, "features", "give both or neither"),
    ({"calendar": ["hour"], "slot_minutes": 30, "numeric": ["hour"]}, "features", "give both or neither"),
    ({"calendar": ["slot"], "slot_minutes": 7, "numeric": ["slot"]}, "features", "must divide a day"),
    ({"calendar": ["slot"], "slot_minutes": 0, "numeric": ["slot"]}, "features.slot_minutes", "greater than 0"),
])
def test_slot_settings_that_cannot_work_exit_2(tmp_path: Path, features: dict, key: str, words: str) -> None:
    root = _half_hourly_project(tmp_path / "power", features=features)
    stderr = _one_line(cli(root, "data", "ingest", check=2).stderr)
    assert key in stderr and words in stderr and "slot_minutes" in stderr


# -- item 7: rejected values in the tool's own words --------------------------------------------------------

def _table_version(root: Path) -> int | None:
    table = TrainingTable.for_project(load_project(root))
    return table.version_number(None) if table.exists() else None


def test_each_rejected_value_gets_one_line_with_row_column_value_and_rule(tmp_path: Path) -> None:
    root = _yearly_project(tmp_path / "gdp", schema__columns__x={"type": "float", "min": 0, "max": 100})
    cli(root, "data", "ingest", check=0)
    before = _table_version(root)
    lines = (root / "data.csv").read_text().splitlines()
    bad = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        year, region, x, y = line.split(",")
        if i <= 8:
            x = "about 5"  # eight values that are not numbers: five shown, three counted
        elif i == 9:
            x = "120"
        elif i == 10:
            region = "[red]west[/]"  # markup in a value is shown as it is
        bad.append(",".join([year, region, x, y]))
    (root / "bad.csv").write_text("\n".join(bad) + "\n")

    proc = cli(root, "data", "ingest", "--path", "bad.csv", check=4)

    err = proc.stderr.splitlines()
    assert 'row 1, column \'x\': "about 5": expected a number' in err
    assert 'row 5, column \'x\': "about 5": expected a number' in err
    assert not any(line.startswith("row 6, column 'x'") for line in err)
    assert "  ... and 3 more row(s) in column 'x': expected a number (8 in all)" in err
    assert 'row 9, column \'x\': "120": above max 100' in err  # as given: the column was text
    assert "row 10, column 'region': \"[red]west[/]\": not one of the categories (north, south, east)" in err
    for leak in ("coerce_dtype", "dtype(", "TypeError", "float64", "Traceback", "isin(", "less_than"):
        assert leak not in proc.stderr, leak
    assert _table_version(root) == before
    report = json.loads(sorted((root / ".cd4ml" / "reports").glob("validation-*.json"))[-1].read_text())
    assert sorted((f["rule"], f["column"], f["rows"], len(f["examples"])) for f in report["failures"]) == [
        ("above max 100", "x", 1, 1), ("expected a number", "x", 8, 5),
        ("not one of the categories (north, south, east)", "region", 1, 1)]


@pytest.mark.parametrize(("year_type", "value", "line"), [
    ("date", "2019", "row 1, column 'year': 2019: expected a date (YYYY-MM-DD, no time of day), not a number: "
                     "for whole years give the column type int"),
    ("int", "20190101", "row 1, column 'year': 20190101: expected a year (a whole number from 1 to 9999)"),
    ("int", "2019.5", "row 1, column 'year': 2019.5: expected a year (a whole number from 1 to 9999)"),
    ("int", "MMXIX", "row 1, column 'year': \"MMXIX\": expected a year (a whole number from 1 to 9999)"),
])
def test_a_year_that_is_not_a_whole_year_is_rejected_saying_what_a_time_column_may_be(
        tmp_path: Path, year_type: str, value: str, line: str) -> None:
    if year_type == "date":  # the project: the year declared a date (here an input, beside the time)
        columns = {"t": {"type": "date"}, "year": {"type": "date"}, "x": {"type": "float"}, "y": {"type": "float"}}
        root = make_csv_project(tmp_path / "dated", f"t,year,x,y\n2024-01-01,{value},1,2\n", columns,
                                split={"holdout_rows": 1}, features={"numeric": ["x"]})
    else:
        root = _yearly_project(tmp_path / "gdp")
        rows = (root / "data.csv").read_text().splitlines()
        rows[1] = ",".join([value, *rows[1].split(",")[1:]])
        (root / "data.csv").write_text("\n".join(rows) + "\n")
    proc = cli(root, "data", "ingest", check=4)
    assert line in proc.stderr.splitlines(), proc.stderr


def test_an_empty_value_where_none_is_allowed_is_one_line_of_its_own(tmp_path: Path) -> None:
    columns = {"t": {"type": "datetime"}, "n": {"type": "int"}, "b": {"type": "bool"}, "y": {"type": "float"}}
    root = make_csv_project(tmp_path / "p", "t,n,b,y\n2024-01-01,1,true,1\n2024-01-02,,,2\n", columns)
    proc = cli(root, "data", "ingest", check=4)
    err = proc.stderr.splitlines()
    assert "row 2, column 'n': null: is empty, and the column is not nullable" in err
    assert "row 2, column 'b': null: is empty, and the column is not nullable" in err
    assert "coerce_dtype" not in proc.stderr and "dtype(" not in proc.stderr and "check" not in proc.stderr
