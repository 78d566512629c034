"""A classifier's monitoring parts over synthetic log lines: the typed prediction store (real Delta
tables), live metrics, drift of the answered class and of each class's probability, and the confusion
matrix and calibration curve, each checked against scikit-learn or a direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import make_csv_project
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, log_loss, roc_auc_score

from cd4ml.config import ProjectConfig, load_project
from cd4ml.monitor.drift import CategoricalSummary
from cd4ml.monitor.live import LiveData, Window
from cd4ml.monitor.outcomes import outcomes
from cd4ml.monitor.profile import ReleaseProfile, build_reference
from cd4ml.monitor.report import _drift_windows, _metrics, _scored_arrays, _watched
from cd4ml.monitor.store import PredictionStore
from cd4ml.serve.predlog import PredictionLog

CLASSES = ["no", "yes"]
ROWS = 400


def _project(root: Path) -> Path:
    """A binary project: `busy` (no/yes) from `x`, one row per key `k` and day."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2024-01-01", periods=ROWS // 5, freq="D")
    frame = pd.DataFrame({"t": np.repeat(days, 5).strftime("%Y-%m-%d"), "k": np.tile(np.arange(5), ROWS // 5),
                          "x": rng.normal(size=ROWS)})
    frame["busy"] = np.where(frame["x"] + rng.normal(scale=0.7, size=ROWS) > 0, "yes", "no")
    columns = {"t": {"type": "date"}, "k": {"type": "int"}, "x": {"type": "float"},
               "busy": {"type": "str", "categories": CLASSES}}
    return make_csv_project(root, frame.to_csv(index=False), columns, target="busy", task="binary",
                            schema__keys=["t", "k"], features__numeric=["x"],
                            monitoring__drift__min_rows=50)


def _served(frame: pd.DataFrame, p_yes: np.ndarray) -> list[dict]:
    """Prediction events as the service logs a classifier's: the answered label and the probabilities."""
    return [{"request_id": f"r{i}", "record": 0, "time": "2026-01-01T00:00:00+00:00", "model_version": "1",
             "inputs": {"t": row.t, "k": int(row.k), "x": float(row.x)},
             "output": CLASSES[int(p >= 0.5)], "probabilities": [1.0 - p, p], "fallback": False, "latency_ms": 1.0}
            for i, (row, p) in enumerate(zip(frame.itertuples(), p_yes.tolist()))]


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """The project with every row predicted (a logistic score of x) and its actual logged, plus one line
    whose probabilities are not numbers."""
    root = _project(tmp_path / "busy")
    frame = pd.read_csv(root / "data.csv")
    p_yes = 1.0 / (1.0 + np.exp(-2.0 * frame["x"].to_numpy()))
    cfg = load_project(root).config
    directory = load_project(root).resolve(cfg.serving.log_dir)
    log = PredictionLog(directory)
    log.emit_many([*_served(frame, p_yes), {**_served(frame, p_yes)[0], "request_id": "bad", "probabilities": "x"}])
    log.close()
    actuals = PredictionLog(directory, prefix="actuals")
    actuals.emit_many([{"received_at": "2026-01-02T00:00:00+00:00", "request_id": f"r{i}", "record": 0,
                        "values": {"busy": label}, "source": "http"} for i, label in enumerate(frame["busy"])])
    actuals.close()
    return root, frame, p_yes


def test_the_store_keeps_the_label_and_the_probability_vector_typed(logged) -> None:
    root, _, p_yes = logged
    store = PredictionStore(load_project(root))
    result = store.compact()
    assert (result.predictions, result.actuals, result.bad) == (ROWS, ROWS, 1)
    assert "probabilities" in result.problems[0]
    assert store.quarantined() == {"predictions": 1, "actuals": 0}
    table = store.predictions().to_table()
    assert table.schema.field("prediction").type == pa.string()
    assert table.schema.field("probabilities").type == pa.list_(pa.float64())
    rows = {r["request_id"]: r for r in table.select(["request_id", "prediction", "probabilities"]).to_pylist()}
    assert rows["r7"]["probabilities"] == [1.0 - p_yes[7], p_yes[7]]
    assert rows["r7"]["prediction"] == CLASSES[int(p_yes[7] >= 0.5)]
    con = store.connect()  # DuckDB reads the vector as numbers, not text
    assert con.sql("SELECT max(probabilities[2]) FROM predictions").fetchall()[0][0] == pytest.approx(p_yes.max())


def _compacted(root: Path) -> tuple[ProjectConfig, LiveData]:
    """The project's config and its live data, after compacting the logged lines into the store."""
    project = load_project(root)
    store = PredictionStore(project)
    store.compact()
    return project.config, LiveData(project.config, store.predictions(), store.actuals(), windows=None)


def test_live_metrics_and_outcomes_equal_scikit_learn_on_the_same_rows(logged) -> None:
    root, _, _ = logged
    cfg, live = _compacted(root)
    f = live.frame
    assert len(f) == ROWS and live.has_actual.all()
    actual, pred = _scored_arrays(cfg, f, live.has_actual)
    y = (f["actual_busy"] == "yes").to_numpy().astype(int)
    np.testing.assert_array_equal(actual, y)
    scores = _metrics(cfg, cfg.task, actual, pred, None)
    assert scores["auc"] == pytest.approx(roc_auc_score(y, pred[:, 1]), abs=1e-12)
    assert scores["logloss"] == pytest.approx(log_loss(y, pred), abs=1e-12)

    o = outcomes(CLASSES, actual, pred, cfg.task.encode(f["prediction"].to_numpy(dtype=object)))
    np.testing.assert_array_equal(o.confusion, confusion_matrix(y, (pred[:, 1] >= 0.5).astype(int)))
    observed, predicted = calibration_curve(y, pred[:, 1], n_bins=10, strategy="uniform")
    assert o.calibration_of == "yes" and sum(o.bin_rows) == ROWS
    np.testing.assert_allclose([v for v in o.observed if v is not None], observed, atol=1e-12)
    np.testing.assert_allclose([v for v in o.predicted if v is not None], predicted, atol=1e-12)


def test_drift_of_the_answered_class_and_of_each_probability(logged) -> None:
    root, _, _ = logged
    cfg, live = _compacted(root)
    f = live.frame
    live.windows = [Window(f["day"].min().date(), f["day"].max().date())]
    actual, pred = _scored_arrays(cfg, f, live.has_actual)
    watched = _watched(cfg, None, f)
    # The reference: the same rows where the model gave "yes" much less often (its probability to the sixth).
    reference = np.column_stack([1.0 - pred[:, 1] ** 6, pred[:, 1] ** 6])
    built = build_reference(cfg, watched, reference, actual, {"target_transform": "none"}, days=80)
    profile = ReleaseProfile.from_json(json.loads(json.dumps(built.to_json())))  # as stored with the release
    assert profile == built
    prediction = profile.distributions.prediction
    assert isinstance(prediction, CategoricalSummary) and prediction.values == ["no", "yes"]
    assert [p.name for p in profile.distributions.probabilities] == CLASSES
    assert profile.outcomes.confusion == confusion_matrix(actual, reference[:, 1] >= 0.5).tolist()

    (window,) = _drift_windows(cfg, live, watched, "1", profile, actual, reference)
    assert not any(p.alarm for p in window.drift.probabilities), window.drift.probabilities
    (window,) = _drift_windows(cfg, live, watched, "1", profile, actual, pred)
    assert {"prediction", "probability of no", "probability of yes"} <= set(window.drift.drifted)
    assert window.drift.target.psi == pytest.approx(0.0, abs=1e-9)  # the same actuals as the reference's


def test_multiclass_outcomes_calibrate_the_answered_class() -> None:
    rng = np.random.default_rng(9)
    p = rng.dirichlet([1.0, 1.0, 1.0], size=500)
    y = np.array([rng.choice(3, p=row) for row in p])
    decided = p.argmax(axis=1)
    o = outcomes(["a", "b", "c"], y, p, decided)
    np.testing.assert_array_equal(o.confusion, confusion_matrix(y, decided, labels=[0, 1, 2]))
    confidence = p.max(axis=1)
    observed, predicted = calibration_curve(y == decided, confidence, n_bins=10, strategy="uniform")
    assert o.calibration_of == "answered class"
    np.testing.assert_allclose([v for v in o.observed if v is not None], observed, atol=1e-12)
    np.testing.assert_allclose([v for v in o.predicted if v is not None], predicted, atol=1e-12)


def test_a_bool_target_is_stored_as_bool_and_named_false_true(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"t": np.repeat(pd.date_range("2024-01-01", periods=40), 5).strftime("%Y-%m-%d"),
                          "k": np.tile(np.arange(5), 40), "x": rng.normal(size=200)})
    frame["busy"] = frame["x"] + rng.normal(scale=0.7, size=200) > 0
    root = make_csv_project(tmp_path / "b", frame.to_csv(index=False),
                            {"t": {"type": "date"}, "k": {"type": "int"}, "x": {"type": "float"},
                             "busy": {"type": "bool"}}, target="busy", task="binary", schema__keys=["t", "k"],
                            features__numeric=["x"])
    project = load_project(root)
    cfg = project.config
    p_yes = 1.0 / (1.0 + np.exp(-2.0 * frame["x"].to_numpy()))
    directory = project.resolve(cfg.serving.log_dir)
    log = PredictionLog(directory)
    log.emit_many([{**event, "output": bool(p >= 0.5)} for event, p in zip(_served(frame, p_yes), p_yes)])
    log.close()
    actuals = PredictionLog(directory, prefix="actuals")
    actuals.emit_many([{"received_at": "2026-01-02T00:00:00+00:00", "request_id": f"r{i}", "record": 0,
                        "values": {"busy": bool(v)}, "source": "http"} for i, v in enumerate(frame["busy"])])
    actuals.close()
    store = PredictionStore(project)
    assert store.compact().bad == 0
    assert store.predictions().schema.field("prediction").type == pa.bool_()
    live = LiveData(cfg, store.predictions(), store.actuals(), windows=None)
    actual, pred = _scored_arrays(cfg, live.frame, live.has_actual)
    # Rows come back in serving order: matched to the frame through the request ids.
    order = live.frame["request_id"].str[1:].astype(int).to_numpy()
    np.testing.assert_array_equal(actual, frame["busy"].to_numpy()[order].astype(int))
    scores = _metrics(cfg, cfg.task, actual, pred, None)
    assert scores["auc"] == pytest.approx(roc_auc_score(actual, pred[:, 1]), abs=1e-12)
    profile = build_reference(cfg, _watched(cfg, None, live.frame), pred, actual, {"target_transform": "none"}, 40)
    assert sorted(profile.distributions.prediction.values) == ["false", "true"]
    assert [p.name for p in profile.distributions.probabilities] == ["false", "true"] == profile.outcomes.classes
