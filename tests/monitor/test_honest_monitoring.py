"""Monitoring that tells the truth, from the user's side: a tiny hourly project, a real `cd4ml serve`,
real requests and the real `cd4ml monitor --check`.

- a check without enough evidence says "not judged" with its count and minimum (never "ok");
- windows are calendar weeks: a probe dated next year, or 9999-12-31, moves nothing and is flagged;
- traffic marked `X-Cd4ml-Traffic: test` is answered and logged, and kept out of every check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd
import pytest
from helpers import Service, cli, edit_yaml, make_csv_project, train

from cd4ml.config import load_project

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow

TRAIN_START = "2024-01-01"  # a Monday: 8 weeks of hours, the last one the holdout
WEEK_1, WEEK_2 = "2024-02-26", "2024-03-04"  # the production weeks after it, Monday..Sunday
COLUMNS = {"t": {"type": "datetime"}, "x": {"type": "float"}, "y": {"type": "float"}}


def _hours(start: str, days: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """One hourly series: y follows the hour of day and the input x (x ~ N(shift, 1))."""
    t = pd.date_range(start, periods=days * 24, freq="h")
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, len(t)).round(3)
    y = 20 + 3 * x + 5 * np.sin(2 * np.pi * t.hour.to_numpy() / 24) + rng.normal(0, 0.5, len(t))
    return pd.DataFrame({"t": t, "x": x, "y": y.round(3)})


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"t": t.isoformat(), "x": float(x)} for t, x in zip(frame["t"], frame["x"])]


@pytest.fixture(scope="module")
def hourly_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hourly series, 8 weeks, ingested and trained (copied per test)."""
    from cd4ml.data.ingest import ingest

    root = tmp_path_factory.mktemp("hourly") / "meter"
    make_csv_project(root, _hours(TRAIN_START, 56, seed=1).to_csv(index=False), COLUMNS,
                     features__calendar=["hour", "dayofweek"], features__numeric=["hour", "dayofweek", "x"])
    ingest(load_project(root))
    assert train(root).promoted
    return root


@pytest.fixture
def meter(hourly_template: Path, tmp_path: Path) -> Iterator[tuple[Path, Service]]:
    root = tmp_path / "meter"
    shutil.copytree(hourly_template, root, symlinks=True)
    with Service(root) as svc:
        svc.wait_until("/ready", 200)
        yield root, svc


def _predict(svc: Service, frame: pd.DataFrame, **headers: str) -> dict[str, Any]:
    resp = svc.client.post("/predict", json=_records(frame), headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _feedback(svc: Service, answer: dict[str, Any], frame: pd.DataFrame, rows: range) -> None:
    body = [{"request_id": answer["request_id"], "record": i, "y": float(frame["y"].iloc[i])} for i in rows]
    assert svc.client.post("/feedback", json=body).status_code == 202


def _monitor(root: Path, code: int) -> tuple[str, dict[str, Any]]:
    """`cd4ml monitor --check` with its expected exit code: what it printed (one line per row) and report.json."""
    proc = cli(root, "monitor", "--check", check=code)
    report = json.loads((load_project(root).monitor_dir / "report.json").read_text())
    return " ".join(proc.stdout.split()), report


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def _dashboard_checks(root: Path, browser: "Browser") -> dict[str, str]:
    """The real `cd4ml ui` in Chromium: each check's badge as the page shows it."""
    from playwright.sync_api import expect

    from cd4ml.serve.process import ServiceProcess

    ui = ServiceProcess(root, command="ui")
    context = browser.new_context()
    try:
        ui.wait_until("/", 200)
        page = context.new_page()
        page.goto(ui.url)
        expect(page.locator("#checks-list .check")).to_have_count(4, timeout=60_000)
        return {c.get_attribute("id"): c.locator(".badge").inner_text() for c in page.locator(".check").all()}
    finally:
        context.close()
        ui.stop()


def test_one_hourly_series_says_not_judged_with_count_and_minimum(meter: tuple[Path, Service],
                                                                   browser: "Browser") -> None:
    root, svc = meter
    week = _hours(WEEK_1, 7, seed=2)
    answer = _predict(svc, week)
    _feedback(svc, answer, week, range(60))
    svc.wait_logged(168, 60)

    out, report = _monitor(root, 0)
    # The holdout held 24 rows a day: half a 7-day window of them is the default minimum.
    accuracy, drift = _check(report, "accuracy"), _check(report, "drift")
    assert (accuracy["status"], accuracy["rows"], accuracy["min_rows"], accuracy["due"]) == ("not judged", 60, 84,
                                                                                            False)
    assert (drift["status"], drift["rows"], drift["min_rows"]) == ("not judged", 168, 200)
    assert report["not_judged"] == ["drift", "accuracy", "coverage"] and not report["retrain_due"]
    assert "accuracy not judged at most 60 scored rows of the champion in a window (84 needed)" in out, out
    assert "drift not judged window 2024-02-26..2024-03-03: 168 rows (200 needed)" in out, out
    assert "accuracy ok" not in out and "drift ok" not in out
    assert "No retraining due, but not judged (too little evidence): drift, accuracy, coverage." in out
    page = (load_project(root).monitor_dir / "report.html").read_text()
    assert "Not judged (too little evidence): drift, accuracy, coverage" in page
    assert _dashboard_checks(root, browser) == {"check-drift": "NOT JUDGED", "check-accuracy": "NOT JUDGED",
                                                "check-coverage": "NOT JUDGED", "check-age": "OK"}

    _feedback(svc, answer, week, range(60, 168))
    svc.wait_logged(168, 168)
    out, report = _monitor(root, 0)
    accuracy = _check(report, "accuracy")
    assert accuracy["judged"] and accuracy["status"] == "ok" and accuracy["rows"] == 168, accuracy
    assert "accuracy ok window 2024-02-26..2024-03-03: live rmse" in out and "over 168 rows" in out, out


def test_probe_dated_next_year_moves_no_window_and_is_flagged(meter: tuple[Path, Service]) -> None:
    root, svc = meter
    edit_yaml(root, monitoring__drift__min_rows=100)
    sent = 0
    for start, seed in ((WEEK_1, 3), (WEEK_2, 4)):
        week = _hours(start, 7, seed=seed)
        _feedback(svc, _predict(svc, week), week, range(168))
        sent += 168
    svc.wait_logged(sent, sent)
    _, before = _monitor(root, 0)
    assert [(w["start"], w["rows"]) for w in before["drift"]["windows"]] == [("2024-02-26", 168), ("2024-03-04", 168)]
    judged = {c["name"]: c["detail"] for c in before["checks"]}
    assert "window 2024-03-04..2024-03-10" in judged["accuracy"] and "over 168 rows" in judged["accuracy"]

    next_year = _hours("2025-03-05", 1, seed=5).head(1)
    two_weeks_on = _hours("2024-03-20", 1, seed=6).head(1)
    _predict(svc, next_year)
    _predict(svc, two_weeks_on)
    svc.wait_logged(sent + 2, sent)
    out, after = _monitor(root, 0)
    assert {c["name"]: c["detail"] for c in after["checks"]} == {
        **judged, "drift": judged["drift"] + "; later window 2024-03-18..2024-03-24 not judged (1 rows, 100 needed)"}
    assert [r for r in after["accuracy"]] == [r for r in before["accuracy"]]  # the last days' actuals still count
    assert after["excluded"]["out_of_range"] == 1 and after["excluded"]["out_of_range_days"] == ["2025-03-05"]
    assert "1 dated out of range (e.g. 2025-03-05; more than 90 days from the usual lead)" in out, out
    stray = after["drift"]["windows"][-1]
    assert (stray["start"], stray["rows"], stray["judged"], stray["alarm"]) == ("2024-03-18", 1, False, False)


def test_test_traffic_stays_out_and_a_far_future_record_hides_no_drift(meter: tuple[Path, Service]) -> None:
    root, svc = meter
    edit_yaml(root, monitoring__drift__min_rows=100)
    # The holdout week's inputs again, a week later: nothing drifts, whatever the sample.
    week = _hours(TRAIN_START, 56, seed=1).tail(168).assign(t=pd.date_range(WEEK_1, periods=168, freq="h"))
    _predict(svc, week)
    # A 1,000-record batch of drifted inputs, marked as test traffic: answered, logged as such, ignored.
    batch = pd.concat([_hours(WEEK_1, 7, seed=8, shift=4.0)] * 6).head(1000)
    answer = _predict(svc, batch, **{"X-Cd4ml-Traffic": "test"})
    assert answer["traffic"] == "test" and len(answer["predictions"]) == 1000
    for bad in ("TEST", "prod", "test, live"):
        resp = svc.client.post("/predict", json=_records(week.head(1)), headers={"X-Cd4ml-Traffic": bad})
        assert resp.status_code == 400, resp.text
        detail = resp.json()["detail"]
        assert detail.startswith(f"header x-cd4ml-traffic: {bad!r} is not one of live, test"), detail
    svc.wait_logged(1168, 0)
    logged = [json.loads(line) for f in sorted((root / ".cd4ml" / "predictions").glob("predictions-*.jsonl"))
              for line in f.read_text().splitlines()]
    assert sum(e["traffic"] == "test" for e in logged) == 1000 and sum(e["traffic"] == "live" for e in logged) == 168
    out, report = _monitor(root, 0)
    assert report["excluded"]["test"] == 1000 and not report["retrain_due"]
    assert _check(report, "drift")["status"] == "ok" and report["drift"]["windows"][-1]["rows"] == 168
    assert "1,000 test-traffic prediction(s)" in out
    from cd4ml.monitor.store import PredictionStore

    stored = PredictionStore(load_project(root)).predictions().to_table(columns=["traffic"])["traffic"]
    assert sorted(set(stored.to_pylist())) == ["live", "test"]

    # Issue 15, item 8: 500 drifted live predictions ask for retraining, and one dated 9999-12-31 changes nothing.
    _predict(svc, pd.concat([_hours(WEEK_2, 7, seed=9, shift=4.0)] * 3).head(500))
    svc.wait_logged(1668, 0)
    out, report = _monitor(root, 5)
    drifted = _check(report, "drift")
    assert drifted["status"] == "due" and "window 2024-03-04..2024-03-10: drifted: x" in drifted["detail"]
    far = _hours(WEEK_2, 1, seed=10).head(1).assign(t=pd.Timestamp("9999-12-31"))
    assert len(_predict(svc, far)["predictions"]) == 1
    svc.wait_logged(1669, 0)
    out, report = _monitor(root, 5)
    assert _check(report, "drift") == drifted
    assert report["excluded"]["out_of_range_days"] == ["9999-12-31"] and "9999-12-31" in out
    assert 'cd4ml_drift_alarm{feature="x"} 1.0' in svc.client.get("/metrics").text  # what alerting sees
