"""Actuals, live accuracy, drift checks and refresh: a real service, real stores, the real CLI.

One served project per module, fed day by day from the small grocery world after its
training data ends: forecasts over HTTP, then actuals by request id, by keys over HTTP and
as a file, with duplicates, unknown and late ones mixed in.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.evaluate.metrics import METRICS
from cd4ml.examples.groceries import GroceryWorld
from cd4ml.serve.process import ServiceProcess
from helpers import SMALL_WORLD, Service, cli, edit_yaml, train

pytestmark = pytest.mark.slow

LATE_SECONDS = 3.0
WORLD = GroceryWorld(**{k: v for k, v in SMALL_WORLD.items() if k not in ("start", "end")})
INPUTS = ["store_nbr", "item_nbr", "onpromotion"]


def _records(day: pd.DataFrame) -> list[dict[str, Any]]:
    return day[INPUTS].assign(date=day["date"].dt.strftime("%Y-%m-%d")).to_dict("records")


def _actuals(day: pd.DataFrame) -> list[dict[str, Any]]:
    return day[["store_nbr", "item_nbr", "unit_sales", "expected_sales"]].assign(
        date=day["date"].dt.strftime("%Y-%m-%d")).to_dict("records")


@pytest.fixture(scope="module")
def served(ingested_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Service]]:
    root = tmp_path_factory.mktemp("loop") / "shop"
    shutil.copytree(ingested_template, root, symlinks=True)
    edit_yaml(root, monitoring={"late_after_days": LATE_SECONDS / 86400, "accuracy": {"min_rows": 200}})
    assert train(root).promoted
    with Service(root) as svc:
        svc.wait_until("/ready", 200)
        yield root, svc


@pytest.fixture(scope="module")
def week(served: tuple[Path, Service], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seven production days: forecasts, then actuals in every way the loop accepts."""
    root, svc = served
    days = list(WORLD.days("2024-09-01", "2024-09-07"))
    served_preds: dict[str, np.ndarray] = {}
    sent_predictions = sent_actuals = 0
    for i, day in enumerate(days):
        date = str(day["date"].iloc[0].date())
        resp = svc.client.post("/predict", json=_records(day))
        assert resp.status_code == 200
        doc = resp.json()
        served_preds[date] = np.asarray(doc["predictions"])
        sent_predictions += len(day)
        if i == 0:  # by request id and record index
            body = [{"request_id": doc["request_id"], "record": j, "unit_sales": float(v)}
                    for j, v in enumerate(day["unit_sales"])]
        elif i < 6:  # by keys
            body = _actuals(day)
        else:
            continue
        assert svc.client.post("/feedback", json=body).status_code == 202
        sent_actuals += len(body)
    # Day 3 is forecast again (a client retry): its actuals must still count once.
    assert svc.client.post("/predict", json=_records(days[2])).status_code == 200
    sent_predictions += len(days[2])
    # Ten duplicates of day 2's actuals, and five for keys never forecast.
    dupes = _actuals(days[1])[:10]
    unknown = [{**a, "date": "2024-10-01"} for a in _actuals(days[1])[:5]]
    assert svc.client.post("/feedback", json=dupes + unknown).status_code == 202
    sent_actuals += 15
    svc.wait_logged(sent_predictions, sent_actuals)
    # Day 7's actuals come late, as a file.
    time.sleep(LATE_SECONDS + 1)
    csv = tmp_path_factory.mktemp("actuals") / "day7.csv"
    pd.DataFrame(_actuals(days[6])).to_csv(csv, index=False)
    cli(root, "feedback", str(csv), check=0)
    return {"days": days, "served": served_preds}


def test_feedback_endpoint_refuses_bad_actuals_with_record_and_field(served: tuple[Path, Service]) -> None:
    _, svc = served
    bad = [{"request_id": "abc"},  # no target
           {"date": "2024-09-01", "store_nbr": 1, "unit_sales": 3.0},  # neither request_id nor every key
           {"request_id": "abc", "unit_sales": -1.0},  # out of range
           {"request_id": "abc", "unit_sales": 1.0, "colour": "red"}]  # unknown field
    resp = svc.client.post("/feedback", json=bad)
    assert resp.status_code == 422
    errors = resp.json()["errors"]
    assert [(e["record"], e["field"]) for e in errors] == [(0, None), (1, None), (2, "unit_sales"), (3, "colour")]
    assert "target 'unit_sales' is required" in errors[0]["reason"]
    assert "missing: item_nbr" in errors[1]["reason"]
    assert svc.client.post("/feedback", content=b"{not json", headers={"content-type": "application/json"}
                           ).status_code == 422


def test_feedback_file_with_a_bad_row_stores_nothing(served: tuple[Path, Service], tmp_path: Path) -> None:
    root, _ = served
    from cd4ml.monitor.store import PredictionStore

    before = PredictionStore(load_project(root)).actuals()
    rows_before = before.count_rows() if before is not None else 0
    csv = tmp_path / "bad.csv"
    csv.write_text("date,store_nbr,item_nbr,unit_sales\n2024-09-01,1,100001,2.0\n2024-09-01,1,100002,lots\n")
    proc = cli(root, "feedback", str(csv), check=4)
    assert "row 3, unit_sales" in proc.stderr and "nothing stored" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = PredictionStore(load_project(root)).actuals()
    assert (after.count_rows() if after is not None else 0) == rows_before


def test_live_accuracy_equals_offline_computation_and_counts_are_exact(
        served: tuple[Path, Service], week: dict[str, Any]) -> None:
    root, _ = served
    from cd4ml.monitor.report import build_report

    report = build_report(load_project(root))
    fb = report.feedback
    assert fb == {"received": 7 * 120 + 15, "matched": 7 * 120, "duplicate": 10, "unknown": 5, "late": 120}
    accuracy = {r.day.isoformat(): r for r in report.accuracy}
    assert sorted(accuracy) == sorted(week["served"])
    for day in week["days"]:
        date = str(day["date"].iloc[0].date())
        weights = np.where(day["perishable"].to_numpy() == 1, 1.25, 1.0)
        offline = METRICS["nwrmsle"](day["unit_sales"].to_numpy(), week["served"][date], weights)
        assert accuracy[date].rows == 120
        assert accuracy[date].metrics["nwrmsle"] == pytest.approx(offline, rel=1e-12, abs=1e-12)
    traffic = {r.day.isoformat(): r for r in report.traffic}
    assert traffic["2024-09-03"].predictions == 240 and traffic["2024-09-03"].requests == 2
    release = next(r for r in report.releases if r.champion)
    assert release.live is not None and release.live.rows == 7 * 120
    window = report.drift.windows[-1].drift
    assert not window.alarm, window.drifted
    assert window.target is not None and window.segments


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    """A report document without what changes between two builds of the same evidence: when it was
    built, the champion's age, and the delivery window's ends (the last 90 days up to the build)."""
    doc = {**doc, "generated_at": None, "champion": {**doc["champion"], "age_days": None},
           "delivery": {**doc["delivery"], "since": None, "until": None}}
    doc["checks"] = [{**c, "detail": None} if c["name"] == "age" else c for c in doc["checks"]]
    return doc


def test_the_typed_report_is_the_json_document_of_report_json_and_monitor_json(
        served: tuple[Path, Service], week: dict[str, Any]) -> None:
    root, _ = served
    import json

    from cd4ml.monitor.report import build_report

    printed = json.loads(cli(root, "monitor", "--json", check=0).stdout)
    written_text = (load_project(root).monitor_dir / "report.json").read_text()
    assert printed == json.loads(written_text)
    report = build_report(load_project(root), compact=False)
    doc = report.to_json()
    assert _stable(doc) == _stable(printed)
    assert json.dumps(_stable(doc), indent=1) == json.dumps(_stable(json.loads(written_text)), indent=1)  # key order

    # The documented format (the dashboard's sample report): the same keys in every part the project fills.
    sample = json.loads((Path(__file__).parent / "sample_report.json").read_text())
    assert list(doc) == list(sample)
    for part in ("champion", "excluded", "prediction_histogram", "drift"):
        assert set(doc[part]) == set(sample[part]), part
    for part in ("traffic", "accuracy", "releases", "timeline"):
        assert set(doc[part][0]) == set(sample[part][0]), part
    window, sample_window = doc["drift"]["windows"][-1], sample["drift"]["windows"][-1]
    assert set(window) == set(sample_window)
    for part in ("features", "segments"):
        assert set(window[part][0]) == set(sample_window[part][0]), part
    assert set(window["prediction"]) == set(window["target"]) == set(sample_window["prediction"])
    assert [set(c) for c in doc["checks"]] == [set(sample["checks"][0]) | {"rows", "min_rows"}] * 3 + \
        [set(sample["checks"][0])]

    # Attributes are the document's values.
    assert doc["retrain_due"] is report.retrain_due and doc["not_judged"] == report.not_judged
    assert doc["champion"]["version"] == report.champion.version == "1"
    assert doc["generated_at"] == report.generated_at.isoformat()
    assert [c["status"] for c in doc["checks"]] == [c.status for c in report.checks]
    assert window["rows"] == report.drift.windows[-1].drift.rows and window["start"] == \
        report.drift.windows[-1].window.start.isoformat()


def test_check_exits_5_naming_the_drifted_column_when_a_store_opens(
        served: tuple[Path, Service], week: dict[str, Any]) -> None:
    root, svc = served
    logged = svc.client.get("/ready").json()["predictions_logged"]
    n = 0
    for day in WORLD.days("2024-09-09", "2024-09-15"):  # Monday..Sunday: one calendar window
        records = _records(day)
        store_4 = [{**r, "store_nbr": 4} for r in records if r["store_nbr"] == 1]  # a store the model never saw
        resp = svc.client.post("/predict", json=records + store_4)
        assert resp.status_code == 200 and sum(resp.json()["fallback"]) == len(store_4)
        n += len(records) + len(store_4)
    svc.wait_logged(logged + n, 0)
    proc = cli(root, "monitor", "--check")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "retraining is due (drift" in proc.stderr
    import json

    report = json.loads((load_project(root).monitor_dir / "report.json").read_text())
    window = report["drift"]["windows"][-1]
    assert window["rows"] == n and "store_nbr" in window["drifted"]
    store = next(f for f in window["features"] if f["name"] == "store_nbr")
    assert store["new_values"] == ["4"] and store["psi"] >= 0.25
    assert (load_project(root).monitor_dir / "report.html").read_text().count("data:image/png;base64,") >= 2


def test_refresh_appends_production_rows_once_as_the_world_had_them(
        served: tuple[Path, Service], week: dict[str, Any]) -> None:
    root, _ = served
    from cd4ml.data.table import TrainingTable

    table = TrainingTable.for_project(load_project(root))
    before = table.version_number()
    proc = cli(root, "data", "refresh", check=0)
    # Day 1's actuals came by request id with the target only: no oracle value, so not training rows.
    assert "Left out 120 row(s) whose actuals lack required column(s): expected_sales" in proc.stdout, proc.stdout
    assert "Appended 720 production rows" in proc.stdout, proc.stdout
    assert table.version_number() == before + 1
    assert table.versions()[0].origin == "production"
    frame, _ = table.read()
    fed = frame[frame["date"] >= "2024-09-01"].reset_index(drop=True)
    world = pd.concat(week["days"][1:], ignore_index=True)[list(frame.columns)]
    world = world.sort_values(["date", "store_nbr", "item_nbr"], ignore_index=True)
    pd.testing.assert_frame_equal(fed, world, check_dtype=False)
    again = cli(root, "data", "refresh", check=0)
    assert "Nothing new" in again.stdout and table.version_number() == before + 1


def test_ui_serves_the_projects_report_and_its_page(served: tuple[Path, Service], week: dict[str, Any]) -> None:
    root, _ = served
    import httpx

    ui = ServiceProcess(root, command="ui")
    try:
        ui.wait_until("/", 200)
        report = httpx.get(f"{ui.url}/api/report", timeout=60).json()
        assert report["format"] == 1 and report["champion"]["version"] == "1"
        assert report["feedback"]["matched"] == 7 * 120
        assert "dashboard.js" in httpx.get(ui.url, timeout=10).text
    finally:
        assert ui.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown
