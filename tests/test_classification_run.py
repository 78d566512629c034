"""Classification through `cd4ml run`: LightGBM and scikit-learn classifiers on small generated CSV
projects, binary and multiclass; what the terminal shows, the gate, and the release's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cd4ml
from cd4ml.config import ModelConfig, load_project
from cd4ml.release import estimators
from cd4ml.release.registry import Registry
from cd4ml.task import TASKS
from helpers import cli, git_init, make_csv_project

REGIONS = ["north", "south", "east"]
LEVELS = ["low", "mid", "high"]


def _rows(days: int, per_day: int, seed: int) -> tuple[np.ndarray, ...]:
    """Dates, a region and two numbers per row, and a score that drives the label."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    t = np.datetime64("2024-01-01") + (np.arange(n) // per_day).astype("timedelta64[D]")
    region = rng.integers(0, len(REGIONS), n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    score = 1.5 * x1 - x2 + np.array([-0.8, 0.0, 0.8])[region]
    return t, region, x1, x2, score, rng


def _binary_csv(days: int = 60, per_day: int = 50, seed: int = 11) -> str:
    """`y` true with probability sigmoid(score) - 1 (a minority class); `p_true` that probability (the oracle)."""
    t, region, x1, x2, score, rng = _rows(days, per_day, seed)
    p = 1.0 / (1.0 + np.exp(-(score - 1.0)))
    y = rng.uniform(size=len(p)) < p
    lines = [f"{d},{REGIONS[r]},{a:.4f},{b:.4f},{str(v).lower()},{q:.6f}"
             for d, r, a, b, v, q in zip(t, region, x1, x2, y, p)]
    return "t,region,x1,x2,y,p_true\n" + "\n".join(lines) + "\n"


def _multiclass_csv(days: int = 60, per_day: int = 40, seed: int = 12) -> str:
    t, region, x1, x2, score, rng = _rows(days, per_day, seed)
    level = np.digitize(score + rng.normal(scale=0.7, size=len(score)), [-0.7, 0.7])
    lines = [f"{d},{REGIONS[r]},{a:.4f},{b:.4f},{LEVELS[v]}" for d, r, a, b, v in zip(t, region, x1, x2, level)]
    return "t,region,x1,x2,y\n" + "\n".join(lines) + "\n"


_FEATURES = {"categorical": ["region"], "numeric": ["x1", "x2", "dayofweek"], "calendar": ["dayofweek"]}
_COLUMNS = {"t": {"type": "date"}, "region": {"type": "str", "categories": REGIONS},
            "x1": {"type": "float"}, "x2": {"type": "float"}}


def _project(root: Path, csv: str, columns: dict, **changes: object) -> Path:
    make_csv_project(root, csv, {**_COLUMNS, **columns}, **{"features": _FEATURES, "split": {"holdout_days": 14},
                                                            **changes})
    git_init(root)
    cli(root, "data", "ingest", check=0)
    return root


def _release(root: Path, version: str) -> cd4ml.Release:
    project = load_project(root)
    return Registry.for_project(project).load(version, project.release_cache)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A binary LightGBM project with its oracle, trained once through the CLI: (project, terminal output)."""
    root = _project(tmp_path_factory.mktemp("binary") / "busy", _binary_csv(),
                    {"y": {"type": "bool"}, "p_true": {"type": "float"}}, task="binary", oracle_column="p_true",
                    model__params={"n_estimators": 60, "learning_rate": 0.05, "num_leaves": 8, "n_jobs": 1},
                    acceptance__beat_baseline=True,
                    acceptance__thresholds={"auc": {"min": 0.7}, "ece": {"max": 0.15}})
    return root, cli(root, "run", check=0).stdout


def test_binary_run_prints_each_metric_for_model_baseline_and_oracle_and_passes_the_gate(binary) -> None:
    _, out = binary
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in out.splitlines() if line.count("│") >= 5}
    assert {"auc", "logloss", "brier", "ece", "accuracy"} <= set(rows), out
    model, baseline, oracle = (float(v) for v in rows["auc"])
    assert baseline < 0.75 < model <= oracle + 0.02, out  # the class prior per group ranks little
    assert float(rows["logloss"][0]) < float(rows["logloss"][1]), out
    assert "PASSED" in out and "threshold:auc" in out and "threshold:ece" in out, out


def test_a_reloaded_binary_release_gives_the_probabilities_the_run_scored(binary) -> None:
    root, _ = binary
    release = _release(root, "1")
    assert release.task.classes == (False, True) and release.task.threshold == 0.5
    frame = release.example()
    p = release.predict_frame(frame)
    assert p.shape == (len(frame), 2) and np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    client = Registry.for_project(load_project(root)).client
    run = client.get_run(client.get_model_version("tiny", "1").run_id)
    assert run.data.metrics["parity.max_abs_diff"] == 0.0 and run.data.params["decision.threshold"] == "0.5"


def test_also_no_worse_rejects_a_model_better_on_the_primary_metric_but_worse_on_a_listed_one(binary) -> None:
    root, _ = binary
    # The same trees deciding at 0.25 instead of 0.5: more of the minority class is caught (f1 up),
    # more rows are wrong (accuracy down).
    proc = cli(root, "run", "--json", "--set", "metrics.primary=f1", "--set", "decision.threshold=0.25",
               "--set", "acceptance.also_no_worse=[accuracy]", check=3)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["gate"]["checks"]}
    assert checks["vs_champion"]["passed"] and checks["vs_champion"]["value"] > checks["vs_champion"]["champion"]
    failed = checks["vs_champion:accuracy"]
    assert not failed["passed"] and failed["value"] < failed["champion"]
    assert "accuracy" in failed["reason"] and "worse than champion v1" in failed["reason"]


def test_a_regressor_under_a_binary_task_is_a_config_error_naming_model_algorithm(binary) -> None:
    root, _ = binary
    proc = cli(root, "run", "--set", "model.algorithm=sklearn.linear_model.Ridge", "--set", "model.params={}", check=2)
    assert "model.algorithm" in proc.stderr and "is a regressor" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A multiclass project fitted by a scikit-learn classifier with sigmoid calibration: (project, run --json)."""
    root = _project(tmp_path_factory.mktemp("multiclass") / "levels", _multiclass_csv(),
                    {"y": {"type": "str", "categories": LEVELS}}, task="multiclass",
                    model={"algorithm": "sklearn.linear_model.LogisticRegression", "calibration": "sigmoid",
                           "params": {"max_iter": 200}},
                    features={**_FEATURES, "categorical": [], "numeric": ["x1", "x2"]},
                    acceptance__thresholds={"balanced_accuracy": {"min": 0.5}})
    return root, json.loads(cli(root, "run", "--json", check=0).stdout)


def test_multiclass_run_scores_probabilities_and_the_release_keeps_its_calibration(multiclass) -> None:
    root, out = multiclass
    assert set(out["metrics"]) == {"auc", "logloss", "brier", "accuracy", "balanced_accuracy"}
    assert out["metrics"]["auc"] > out["baseline"]["auc"] + 0.2 and out["gate"]["passed"]
    release = _release(root, out["version"])
    assert release.task.classes == tuple(LEVELS)
    doc = json.loads((release.folder / "release.json").read_text())
    assert doc["estimator"] == {"kind": "skops", "file": "model.skops", "classes": 3, "calibration": "sigmoid"}
    p = release.predict_frame(release.example())
    assert p.shape[1] == 3 and np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    parity = next(c for c in out["gate"]["checks"] if c["name"] == "parity")
    assert parity["passed"] and parity["value"] == 0.0


def test_a_multiclass_target_encoding_is_a_config_error(multiclass) -> None:
    root, _ = multiclass
    proc = cli(root, "run", "--set", "features.target_encodings=[[region]]", check=2)
    assert "features.target_encodings" in proc.stderr and "multiclass" in proc.stderr, proc.stderr


def test_calibration_and_a_chosen_threshold_are_stored_and_reload_exactly(binary) -> None:
    root, _ = binary
    proc = cli(root, "run", "--json", "--no-promote", "--set", "model.calibration=isotonic",
               "--set", "decision.threshold={maximize: f1}", check=None)
    out = json.loads(proc.stdout)
    parity = next(c for c in out["gate"]["checks"] if c["name"] == "parity")
    assert parity["passed"] and parity["value"] == 0.0
    release = _release(root, out["version"])
    doc = json.loads((release.folder / "release.json").read_text())
    assert doc["estimator"]["calibration"] == "isotonic" and (release.folder / "estimator/calibration.npz").is_file()
    # f1 of a minority class is best below 0.5; the chosen threshold is the release's own.
    assert 0.0 < release.task.threshold < 0.5 and doc["spec"]["task"]["threshold"] == release.task.threshold
    assert out["decision_threshold"] == release.task.threshold
    # Nothing changed: the skipped run reports the threshold its earlier run chose.
    again = json.loads(cli(root, "run", "--json", "--no-promote", "--set", "model.calibration=isotonic",
                           "--set", "decision.threshold={maximize: f1}", check=None).stdout)
    assert again["skipped_as"] == out["run_id"] and again["decision_threshold"] == release.task.threshold


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    return TASKS["binary"].configured("y", "bool", None, 0.5).score(["ece"], y, p)["ece"]


def test_calibration_on_later_training_rows_lowers_the_ece_of_an_overconfident_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6000, 4))
    y = (rng.uniform(size=6000) < 1.0 / (1.0 + np.exp(-X[:, 0]))).astype(np.int64)
    task = TASKS["binary"].configured("y", "bool", None, 0.5)
    # Deep trees, a high learning rate, many rounds: probabilities pushed towards 0 and 1.
    params = {"n_estimators": 150, "learning_rate": 0.3, "num_leaves": 63, "min_child_samples": 2, "n_jobs": 1}
    raw = _ece(y[4800:], _fitted(task, params, X[:3600], y[:3600]).predict(X[4800:]))
    for method in ("isotonic", "sigmoid"):
        model = _fitted(task, params, X[:3600], y[:3600])
        estimators.calibrate(model, method, X[3600:4800], y[3600:4800])
        p = model.predict(X[4800:])
        assert _ece(y[4800:], p) < raw / 2, method
        meta = estimators.save(model, tmp_path / method)
        assert np.array_equal(estimators.load(tmp_path / method, meta).predict(X[4800:]), p)


def _fitted(task, params: dict, X: np.ndarray, y: np.ndarray) -> estimators.Classifier:
    model = estimators.make_estimator(ModelConfig(algorithm="lightgbm", params=params), 1, task)
    return estimators.fit(model, X, y, [], "lightgbm")


def test_a_class_never_seen_in_training_gets_probability_zero_and_rows_still_sum_to_one() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2))
    y = np.where(X[:, 0] > 0, 2, 0)  # class 1 of 3 never occurs
    task = TASKS["multiclass"].configured("y", "str", LEVELS, 0.5)
    for algorithm in ("lightgbm", "sklearn.ensemble.HistGradientBoostingClassifier"):
        model = estimators.make_estimator(ModelConfig(algorithm=algorithm, params={"max_iter": 10} if "sklearn"
                                                      in algorithm else {"n_estimators": 10}), 1, task)
        p = estimators.fit(model, X, y, [], algorithm).predict(X)
        assert p.shape == (300, 3) and np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12), algorithm
        assert p[:, 1].max() < 0.05 and (p[:, 2][X[:, 0] > 1] > 0.5).all(), algorithm
