"""Time columns as users have them (issue 17): an ISO week (`2024-W05`) or a month (`2024-05`) as the time column,
held as the date each period starts, given as the period's text everywhere a user writes one."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.errors import ConfigError
from cd4ml.periods import PERIODS
from helpers import Service, cli, make_csv_project

REGIONS = ["north", "south"]


@pytest.mark.parametrize(("text", "start"), [
    ("2024-W01", dt.date(2024, 1, 1)), ("2025-W01", dt.date(2024, 12, 30)), ("2020-W53", dt.date(2020, 12, 28)),
    ("2024-W05", dt.date(2024, 1, 29))])
def test_an_iso_week_starts_on_its_monday_and_reads_back(text: str, start: dt.date) -> None:
    week = PERIODS["week"]
    assert week.start(text) == start and week.text(start) == text


@pytest.mark.parametrize(("kind", "value", "words"), [
    ("week", "2021-W53", "2021 has no week 53"), ("week", "2024-W00", "has no week 0"),
    ("week", "2024-05", "expected a week written 2024-W05"), ("month", "2024-13", "has no month 13"),
    ("month", "2024-5", "expected a month written 2024-05"), ("month", "<b>2024-05</b>", "expected a month"),
    ("week", dt.date(2024, 1, 30), "not the first day of its week (2024-W05 starts on 2024-01-29)"),
    ("month", dt.datetime(2024, 5, 1, 12), "not a time of day"), ("week", 202405, "expected a week")])
def test_what_is_no_period_is_refused_saying_what_was_expected(kind: str, value: object, words: str) -> None:
    with pytest.raises(ValueError) as err:
        PERIODS[kind].start(value)
    assert words in str(err.value), str(err.value)


def _weekly_csv(weeks: int = 120, seed: int = 4) -> str:
    """Two regions' weekly sales with memory (an AR(1) level) and a yearly swing, from 2022-W01."""
    rng = np.random.default_rng(seed)
    rows = ["t,region,y"]
    first = dt.date(2022, 1, 3)
    for i, region in enumerate(REGIONS):
        level = 0.0
        for w in range(weeks):
            level = 0.8 * level + rng.normal(0, 4)
            day = first + dt.timedelta(weeks=w)
            rows.append(f"{PERIODS['week'].text(day)},{region},{100 + 30 * i + level + 10 * np.sin(w / 8.3):.3f}")
    return "\n".join(rows) + "\n"


def _weekly_project(root: Path, **changes: object) -> Path:
    return make_csv_project(
        root, _weekly_csv(), {"t": {"type": "week"}, "region": {"type": "str"}, "y": {"type": "float"}},
        **{"split": {"holdout_periods": 8}, "forecast": {"series": ["region"], "frequency": "1W"},
           "features": {"categorical": ["region"], "calendar": ["weekofyear"], "numeric": ["weekofyear"],
                        "history": {"lags": [1, 2], "windows": [{"size": 4}]}},
           "baseline__group_by": ["region"],
           "model__params": {"n_estimators": 40, "min_child_samples": 3, "n_jobs": 1}, **changes})


@pytest.mark.slow
def test_a_weekly_panel_is_ingested_trained_served_fed_back_and_refreshed_by_its_weeks(tmp_path: Path) -> None:
    root = _weekly_project(tmp_path / "weekly")
    cli(root, "data", "ingest", check=0)
    versions = json.loads(cli(root, "data", "versions", "--json", check=0).stdout)
    assert versions[0]["time_min"].startswith("2022-01-03") and versions[0]["time_max"].startswith("2024-04-15")
    out = json.loads(cli(root, "run", "--json", check=0).stdout)
    assert out["gate"]["passed"], out["gate"]
    import cd4ml

    project = load_project(root)
    with Service(root) as service:
        body = service.client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
        field = body["content"]["application/json"]["schema"]["anyOf"][0]["properties"]["t"]
        assert (field["type"], field["pattern"], field["examples"]) == ("string", r"^(\d{4})-W(\d{2})$", ["2024-W05"])
        assert service.client.get("/inputs").json()["fields"][0]["type"] == "week"
        ahead = [{"t": "2024-W17", "region": r} for r in REGIONS]
        answer = service.client.post("/predict", json=ahead)
        assert answer.status_code == 200, answer.text
        served = answer.json()
        bad = service.client.post("/predict", json={"t": "2024-W60", "region": "north"})
        assert bad.status_code == 422 and "2024 has no week 60" in bad.text and '"field":"t"' in bad.text, bad.text
        later = service.client.post("/predict", json={"t": "2024-W18", "region": "north"})
        assert later.status_code == 422 and "latest actual" in later.text
        # Actuals by week (key) and by request id both reach the history store; then the next week is forecast.
        fed = service.client.post("/feedback", json=[{"t": "2024-W17", "region": "north", "y": 120.0},
                                                     {"request_id": served["request_id"], "record": 1, "y": 150.0}])
        assert fed.status_code == 202, fed.text
        assert service.client.post("/predict", json={"t": "2024-W18", "region": "north"}).status_code == 200
    # Batch scoring reads the weeks' text as the service does: the same answers.
    frame = pd.DataFrame(ahead)
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        monday = int(np.datetime64("2024-04-22T00:00:00").astype(np.int64))
        assert db.execute("SELECT series, value FROM history WHERE t = ? ORDER BY series", [monday]).fetchall() == [
            ('["north"]', 120.0), ('["south"]', 150.0)]
    with pytest.raises(cd4ml.Cd4mlError, match="row 2: expected a week written 2024-W05, got '2024-17'"):
        cd4ml.score(project, pd.DataFrame({"t": ["2024-W18", "2024-17"], "region": REGIONS}))
    # The prediction store reads the logged weeks; monitoring and refresh see the week's Monday.
    report = json.loads(cli(root, "monitor", "--json", check=0).stdout)
    assert [(r["day"], r["predictions"]) for r in report["traffic"]] == [("2024-04-22", 2), ("2024-04-29", 1)]
    assert [(r["day"], r["rows"]) for r in report["accuracy"]] == [("2024-04-22", 2)]
    cli(root, "data", "refresh", check=0)
    versions = json.loads(cli(root, "data", "versions", "--json", check=0).stdout)
    assert versions[0]["origin"] == "production" and versions[0]["time_max"].startswith("2024-04-22")
    np.testing.assert_array_equal(cd4ml.score(project, frame.iloc[:1].assign(t="2024-W18")),
                                  cd4ml.score(project, frame.iloc[:1].assign(t=pd.Timestamp("2024-04-29"))))


def test_a_bad_week_in_the_data_is_refused_at_ingest_naming_row_and_value(tmp_path: Path) -> None:
    csv = "t,region,y\n2024-W01,north,1\n2024-W02,north,2\n2024-W54,north,3\n2024-01-15,north,4\n"
    root = make_csv_project(tmp_path / "p", csv, {"t": {"type": "week"}, "region": {"type": "str"},
                                                  "y": {"type": "float"}},
                            split={"holdout_periods": 1}, features={"numeric": ["weekofyear"],
                                                                    "calendar": ["weekofyear"]})
    refused = cli(root, "data", "ingest", check=4)
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "expected a week written 2024-W05" in said and "2024-W54" in said and "2024-01-15" in said, said
    assert not (root / ".cd4ml" / "data").exists() or not any((root / ".cd4ml" / "data").rglob("*.parquet"))


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"forecast": {"series": ["region"], "frequency": "7D"}}, "forecast", "holds weeks, so the step is a number of "
                                                                          "them (1W)"),
    ({"features": {"holidays": {"country": "US"}, "numeric": ["region"]}}, "features.holidays", "holds weeks"),
    ({"features": {"calendar": ["hour"], "numeric": ["hour"]}}, "features.calendar", "needs a time of day"),
])
def test_settings_that_do_not_fit_a_week_column_name_their_key(tmp_path: Path, changes: dict, key: str,
                                                               words: str) -> None:
    root = _weekly_project(tmp_path / "weekly", **changes)
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert (err.value.key or "").startswith(key) and words in str(err.value), (err.value.key, str(err.value))


def test_a_monthly_table_reads_its_months(tmp_path: Path) -> None:
    rows = ["t,region,y"] + [f"{2020 + m // 12}-{m % 12 + 1:02d},{r},{10 + m + 5 * i}"
                             for m in range(36) for i, r in enumerate(REGIONS)]
    root = make_csv_project(tmp_path / "monthly", "\n".join(rows) + "\n",
                            {"t": {"type": "month"}, "region": {"type": "str"}, "y": {"type": "float"}},
                            split={"holdout_periods": 6}, forecast={"series": ["region"], "frequency": "1MS"},
                            features={"categorical": ["region"], "calendar": ["month"], "numeric": ["month"]})
    cli(root, "data", "ingest", check=0)
    versions = json.loads(cli(root, "data", "versions", "--json", check=0).stdout)
    assert versions[0]["time_min"].startswith("2020-01-01") and versions[0]["time_max"].startswith("2022-12-01")
