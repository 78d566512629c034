"""A classification release through serving, feedback and monitoring: a real `cd4ml run`, a real service
on loopback, the real CLI, answers checked against the release itself and scikit-learn."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from cd4ml.config import load_project
from cd4ml.release.package import frame_to_batch
from cd4ml.release.registry import Registry
from helpers import Service, cli, make_csv_project, scrape, total, train

pytestmark = pytest.mark.slow

CLASSES = ["no", "yes"]
INPUTS = ["t", "k", "x"]
TRAIN_DAYS, LIVE_DAYS, KEYS = 90, 14, 20


def _world(first: str, days: int, seed: int) -> pd.DataFrame:
    """`busy` is "yes" when x plus noise is positive: one row per key k and day."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(first, periods=days, freq="D")
    frame = pd.DataFrame({"t": np.repeat(dates, KEYS).strftime("%Y-%m-%d"), "k": np.tile(np.arange(KEYS), days),
                          "x": rng.normal(size=days * KEYS)})
    frame["busy"] = np.where(frame["x"] + rng.normal(scale=0.8, size=len(frame)) > 0, "yes", "no")
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame[INPUTS].to_dict("records")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Service]]:
    root = tmp_path_factory.mktemp("busy") / "busy"
    columns = {"t": {"type": "date"}, "k": {"type": "int"}, "x": {"type": "float"},
               "busy": {"type": "str", "categories": CLASSES}}
    make_csv_project(root, _world("2024-01-01", TRAIN_DAYS, 1).to_csv(index=False), columns, target="busy",
                     task="binary", schema__keys=["t", "k"], features__numeric=["x"],
                     monitoring={"accuracy": {"min_rows": 50}, "drift": {"min_rows": 50}})
    cli(root, "data", "ingest", check=0)
    assert train(root).promoted
    with Service(root) as svc:
        svc.wait_until("/ready", 200)
        yield root, svc


@pytest.fixture(scope="module")
def answered(served: tuple[Path, Service]) -> dict[str, Any]:
    """Two weeks after the training data: predictions over HTTP, then every actual by request id."""
    root, svc = served
    live = _world("2024-03-31", LIVE_DAYS, 2)
    resp = svc.client.post("/predict", json=_records(live))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    body = [{"request_id": doc["request_id"], "record": i, "busy": label} for i, label in enumerate(live["busy"])]
    assert svc.client.post("/feedback", json=body).status_code == 202
    svc.wait_logged(len(live), len(live))
    return {"frame": live, "doc": doc}


def test_served_probabilities_are_the_releases_own(served: tuple[Path, Service]) -> None:
    root, svc = served
    project = load_project(root)
    release = Registry.for_project(project).load("1", project.release_cache)
    rows = _world("2024-03-31", 2, 5)
    expected = release.predict(frame_to_batch(rows.assign(t=pd.to_datetime(rows["t"])), INPUTS))
    assert expected.shape == (len(rows), 2)

    doc = svc.client.post("/predict", json=_records(rows)).json()
    got = np.array([[p[c] for c in CLASSES] for p in doc["probabilities"]])
    np.testing.assert_array_equal(got, expected)  # bit-exact through JSON
    threshold = release.task.spec()["threshold"]
    assert doc["predictions"] == [CLASSES[int(p >= threshold)] for p in expected[:, 1]]
    one = svc.client.post("/predict", json=_records(rows)[0]).json()
    assert one["prediction"] == doc["predictions"][0]
    assert one["probabilities"] == dict(zip(CLASSES, expected[0].tolist()))

    answer = svc.client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]["200"]
    single, batch = answer["content"]["application/json"]["schema"]["anyOf"]
    assert single["properties"]["prediction"]["enum"] == CLASSES
    assert list(single["properties"]["probabilities"]["properties"]) == CLASSES
    assert batch["properties"]["predictions"]["items"]["enum"] == CLASSES


def test_an_actual_of_an_unknown_class_is_refused_naming_it(served: tuple[Path, Service], tmp_path: Path) -> None:
    root, svc = served
    resp = svc.client.post("/feedback", json=[{"t": "2024-04-01", "k": 1, "busy": "yes"},
                                              {"t": "2024-04-01", "k": 2, "busy": "maybe"}])
    assert resp.status_code == 422
    (error,) = resp.json()["errors"]
    assert (error["record"], error["field"], error["value"]) == (1, "busy", "maybe")
    csv = tmp_path / "actuals.csv"
    csv.write_text("t,k,busy\n2024-04-01,1,yes\n2024-04-01,2,maybe\n")
    proc = cli(root, "feedback", str(csv), check=4)
    assert "row 3, busy" in proc.stderr and "'maybe'" in proc.stderr and "Traceback" not in proc.stderr


def test_monitor_shows_live_auc_equal_to_the_clients_own(served: tuple[Path, Service], answered: dict[str, Any]
                                                         ) -> None:
    root, svc = served
    frame, doc = answered["frame"], answered["doc"]
    y = (frame["busy"] == "yes").to_numpy().astype(int)
    p_yes = np.array([p["yes"] for p in doc["probabilities"]])
    proc = cli(root, "monitor", check=0)
    report = json.loads((root / ".cd4ml" / "monitor" / "report.json").read_text())
    release = next(r for r in report["releases"] if r["version"] == "1")
    assert release["live"]["rows"] == len(frame)
    assert release["live"]["metrics"]["auc"] == pytest.approx(roc_auc_score(y, p_yes), abs=1e-12)
    answered_idx = np.array([CLASSES.index(a) for a in doc["predictions"]])
    assert release["outcomes"]["live"]["confusion"] == confusion_matrix(y, answered_idx).tolist()
    assert release["live"]["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, answered_idx), abs=1e-12)
    assert release["outcomes"]["offline"]["classes"] == CLASSES
    assert sum(map(sum, release["outcomes"]["offline"]["confusion"])) > 0
    window = report["drift"]["windows"][-1]
    assert [p["name"] for p in window["probabilities"]] == CLASSES and window["prediction"] is not None
    assert "confusion matrix" in proc.stdout and "calibration" in proc.stdout
    assert f"{release['live']['metrics']['auc']:.4f}" in proc.stdout
    # The service's /metrics reads the report: each class's probability drift and the live AUC.
    got = scrape(svc.url)
    for p in window["probabilities"]:
        assert total(got, "cd4ml_drift_psi", feature=f"probability of {p['name']}") == pytest.approx(p["psi"])
    assert total(got, "cd4ml_live_metric", metric="auc", model_version="1") == pytest.approx(
        release["live"]["metrics"]["auc"])
    page = (root / ".cd4ml" / "monitor" / "report.html").read_text()
    assert "v1: confusion matrix" in page and "<h2>Confusion and calibration, live vs offline</h2><img" in page


def test_refresh_turns_label_actuals_into_training_rows(served: tuple[Path, Service], answered: dict[str, Any]
                                                        ) -> None:
    root, _ = served
    cli(root, "data", "refresh", check=0)
    from cd4ml.data.table import TrainingTable

    table, _ = TrainingTable.for_project(load_project(root)).read()
    added = table[pd.to_datetime(table["t"]) >= pd.Timestamp("2024-03-31")]
    frame = answered["frame"]
    assert len(added) == len(frame)
    merged = added.assign(t=pd.to_datetime(added["t"]).dt.strftime("%Y-%m-%d")).merge(frame, on=["t", "k"])
    assert (merged["busy_x"] == merged["busy_y"]).all()


def _answers_of(svc: Service, version: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to `rows` once the service runs `version` (it polls the alias)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = svc.client.post("/predict", json=rows).json()
        if doc["model_version"] == version:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"the service never answered with v{version}")


def test_each_release_answers_with_its_own_decision_threshold(served: tuple[Path, Service],
                                                              answered: dict[str, Any]) -> None:
    root, svc = served  # last in the module: it moves the champion
    rows = _records(_world("2024-03-31", 2, 7))
    assert train(root, "decision.threshold=0.9").promoted
    strict = _answers_of(svc, "2", rows)
    p_yes = [p["yes"] for p in strict["probabilities"]]
    assert strict["predictions"] == ["yes" if p >= 0.9 else "no" for p in p_yes]
    cli(root, "rollback", check=0)
    back = _answers_of(svc, "1", rows)
    threshold = load_project(root).config.task.threshold  # v1's: the project file's own
    assert back["predictions"] == ["yes" if p["yes"] >= threshold else "no" for p in back["probabilities"]]
    assert back["predictions"] != strict["predictions"]


def test_a_classifiers_explanation_is_in_log_odds(served: tuple[Path, Service]) -> None:
    _, svc = served
    rows = _records(_world("2024-03-31", 1, 6))[:3]
    doc = svc.client.post("/predict?explain=true", json=rows).json()
    for explained in doc["explanations"]:
        assert explained["link"] == "logistic" and set(explained["contributions"]) == {"x"}
        assert explained["base"] + sum(explained["contributions"].values()) == pytest.approx(explained["raw"], abs=1e-9)
