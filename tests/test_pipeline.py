"""The pipeline on real MLflow stores and Delta tables: gate, registry, rollback, parity, lineage."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cd4ml import tracking
from cd4ml.config import load_project, parse_overrides
from cd4ml.data.table import TrainingTable
from cd4ml.release.registry import Registry
from cd4ml.pipeline import rerun
from cd4ml.pipeline.run import run_pipeline
from cd4ml.train.split import time_split
from helpers import TrainedProject, cli, commit_all, edit_yaml

pytestmark = pytest.mark.slow


def _run(root: Path, *sets: str, **kw):
    return run_pipeline(load_project(root, parse_overrides(list(sets))), **kw)


def _registry(root: Path) -> Registry:
    return Registry.for_project(load_project(root))


def _holdout(root: Path):
    project = load_project(root)
    frame, _ = TrainingTable.for_project(project).read()
    return time_split(frame, project.config.time_column, project.config.split)[1]


def test_first_run_becomes_champion_with_lineage(first_run: TrainedProject, champion_shop: Path) -> None:
    shop, result = champion_shop, first_run.run  # the session's first run, in a copy of its project
    assert result.gate.passed and result.promoted and result.version == "1"
    # The model learns something real: better than the naive baseline, not better than the noise allows.
    assert result.metrics["nwrmsle"] < result.baseline["nwrmsle"]
    assert result.metrics["rmse"] > result.oracle["rmse"]
    registry = _registry(shop)
    assert str(registry.champion().version) == "1"
    mv = registry.version("1")
    commit = (shop / ".git" / "refs" / "heads")
    assert mv.tags["cd4ml.gate"] == "passed"
    assert mv.tags["cd4ml.data_version"] == "0"
    assert mv.tags["cd4ml.run_id"] == result.run_id
    assert len(mv.tags["cd4ml.git_commit"]) == 40 and commit.exists()
    run = registry.client.get_run(result.run_id)
    assert run.data.params["model.params.n_estimators"] == "60"
    assert run.data.tags["cd4ml.git_dirty"] == "False"
    assert run.data.metrics["parity.max_abs_diff"] == 0.0
    assert {"baseline.nwrmsle", "oracle.nwrmsle", "latency.p99_ms"} <= set(run.data.metrics)
    artifacts = {a.path for a in registry.client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/predicted_vs_actual.png", "plots/nwrmsle_by_family.png"}
    report = json.loads(Path(registry.client.download_artifacts(result.run_id, "gate/report.json")).read_text())
    assert {c["name"] for c in report["checks"]} >= {"beats_baseline", "vs_champion", "slice:family",
                                                     "latency_p99_ms", "parity", "threshold:nwrmsle"}


def test_registry_model_predicts_holdout_exactly_as_trained(first_run: TrainedProject, champion_shop: Path) -> None:
    import mlflow

    from cd4ml.release.package import Release

    shop, result = champion_shop, first_run.run
    registry = _registry(shop)  # also points MLflow's own API at this copy's store
    hold = _holdout(shop)
    # The pyfunc flavour, loaded through MLflow's own API by alias:
    model = mlflow.pyfunc.load_model("models:/groceries-forecast@champion")
    via_mlflow = np.asarray(model.predict(hold[["date", "store_nbr", "item_nbr", "onpromotion"]]))
    reloaded: Release = registry.load(result.version, shop / ".cd4ml" / "cache")
    direct = reloaded.predict_frame(hold)
    np.testing.assert_array_equal(via_mlflow, direct)
    assert result.gate.checks[-1].name == "parity" and result.gate.checks[-1].value == 0.0
    assert result.metrics["nwrmsle"] == pytest.approx(
        float(np.sqrt(np.average((np.log1p(direct) - np.log1p(hold["unit_sales"])) ** 2,
                                 weights=np.where(hold["perishable"] == 1, 1.25, 1.0)))), rel=1e-12)


def test_same_inputs_give_identical_metrics(first_run: TrainedProject, shop: Path) -> None:
    a, b = first_run.run, _run(shop)  # two runs in two folders, one of them the session's first
    assert a.metrics == b.metrics and a.baseline == b.baseline


def test_worse_model_is_registered_as_rejected_and_exits_3(first_run: TrainedProject, champion_shop: Path) -> None:
    shop, first = champion_shop, first_run.run
    proc = cli(shop, "run", "--set", "model.params.n_estimators=2", check=3)
    assert "REJECTED" in proc.stdout and "beats_baseline" in proc.stdout
    assert "rejected by the acceptance gate" in proc.stderr
    registry = _registry(shop)
    assert str(registry.champion().version) == first.version
    rejected = registry.version("2")
    assert rejected.tags["cd4ml.gate"] == "rejected"
    assert "vs_champion" in rejected.tags["cd4ml.gate_failed"]
    run = registry.client.get_run(rejected.run_id)
    assert json.loads(run.data.tags["cd4ml.overrides"]) == {"model.params.n_estimators": 2}
    # A rejected version is refused by promote, unless forced with a reason.
    cli(shop, "promote", "2", check=1)
    cli(shop, "promote", "2", "--force", check=1)
    cli(shop, "promote", "2", "--force", "--reason", "incident drill", check=0)
    assert str(registry.champion().version) == "2"
    assert registry.history()[-1].kind == "force-promote"


def test_better_model_promotes_and_rollback_restores(shop: Path) -> None:
    weak = _run(shop, "features.target_encodings=[]")
    strong = _run(shop)
    assert strong.gate.passed and strong.promoted
    assert strong.metrics["nwrmsle"] < weak.metrics["nwrmsle"]
    registry = _registry(shop)
    assert str(registry.champion().version) == strong.version

    cli(shop, "rollback", "--reason", "bad live numbers", check=0)
    assert str(registry.champion().version) == weak.version
    cli(shop, "rollback", check=1)  # nothing earlier than the first champion

    events = registry.history()
    assert [(e.kind, e.from_version, e.to_version) for e in events] == [
        ("auto-promote", None, "1"), ("auto-promote", "1", "2"), ("rollback", "2", "1")]
    assert events[-1].why == "bad live numbers" and events[-1].who

    listing = json.loads(cli(shop, "releases", "--json", check=0).stdout)
    assert [(r["version"], r["champion"], r["gate"]) for r in listing] == [
        ("2", False, "passed"), ("1", True, "passed")]
    history = json.loads(cli(shop, "releases", "--history", "--json", check=0).stdout)
    assert [h["kind"] for h in history] == ["auto-promote", "auto-promote", "rollback"]


def test_gate_rescores_champion_on_the_same_holdout(champion_shop: Path) -> None:
    shop = champion_shop
    second = _run(shop, "model.params.n_estimators=61")
    vs = next(c for c in second.gate.checks if c.name == "vs_champion")
    first_metrics = _registry(shop).client.get_run(_registry(shop).version("1").run_id).data.metrics
    assert vs.champion == pytest.approx(first_metrics["nwrmsle"], rel=1e-12)
    slices = next(c for c in second.gate.checks if c.name == "slice:family")
    assert slices.passed and slices.reason.startswith("worst family")


def test_old_release_keeps_its_own_feature_code(first_run: TrainedProject, champion_shop: Path) -> None:
    shop, first = champion_shop, first_run.run
    features = shop / "features.py"
    # A new version of the project's feature code: paydays shifted by one day.
    features.write_text(features.read_text().replace("(day == 15)", "(day == 16)"))
    commit_all(shop, "shift payday")
    second = _run(shop, "acceptance.champion_tolerance=1.0", "acceptance.slice_tolerance=10")
    registry = _registry(shop)
    cache = shop / ".cd4ml" / "cache"
    old, new = registry.load(first.version, cache), registry.load(second.version, cache)
    assert old.snapshot.namespace != new.snapshot.namespace
    day15 = {"date": np.array(["2024-08-15"], dtype="datetime64[D]")}
    old_fn = old.plan.custom["features:payday_features"]
    new_fn = new.plan.custom["features:payday_features"]
    assert old_fn(day15)["is_payday"].tolist() == [1]
    assert new_fn(day15)["is_payday"].tolist() == [0]
    assert registry.version(second.version).tags["cd4ml.git_commit"] != registry.version(first.version).tags[
        "cd4ml.git_commit"]


def test_dirty_tree_is_recorded(shop: Path) -> None:
    (shop / "features.py").write_text((shop / "features.py").read_text() + "\n# edit\n")
    result = _run(shop)
    assert _registry(shop).client.get_run(result.run_id).data.tags["cd4ml.git_dirty"] == "True"


def test_pinned_data_version_is_read_and_recorded(shop: Path) -> None:
    from cd4ml.data.ingest import ingest

    project = load_project(shop)
    frame, _ = TrainingTable.for_project(project).read()
    frame[frame["date"] >= "2024-03-01"].to_parquet(shop / "recent.parquet")
    ingest(project, path="recent.parquet")
    pinned = _run(shop, data_version=0)
    latest = _run(shop, "acceptance.champion_tolerance=1.0", "acceptance.slice_tolerance=10")
    assert (pinned.data_version, latest.data_version) == (0, 1)
    client = _registry(shop).client
    run = client.get_run(pinned.run_id)
    assert run.data.params["data.version"] == "0"
    assert run.data.metrics["rows.train"] + run.data.metrics["rows.holdout"] == len(frame)
    # The tests' projects set tracking.plots: false (the first run's test checks the default's plots).
    assert client.list_artifacts(pinned.run_id, "plots") == [] and "plots" not in pinned.seconds


@pytest.mark.parametrize(("setting", "key"), [
    ("features.numeric=[onpromotion, nosuch]", "features.numeric"),
    ("features.target_encodings=[[item_nbr, nosuch]]", "features.target_encodings"),
    ("slices=[nosuch]", "slices"),
    ("baseline.group_by=[nosuch]", "baseline.group_by"),
])
def test_unknown_feature_columns_are_config_errors(shop: Path, setting: str, key: str) -> None:
    proc = cli(shop, "run", "--set", setting, check=2)
    assert key in proc.stderr and "'nosuch' is neither in the data nor derived" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version_without_verdict_cannot_be_promoted(two_versions_shop: Path) -> None:
    shop = two_versions_shop
    registry = _registry(shop)
    registry.tag("2", {"gate": "pending"})  # as left by a run that died inside the gate
    proc = cli(shop, "promote", "2", check=1)
    assert "has no verdict from the acceptance gate" in proc.stderr
    assert str(registry.champion().version) == "1"


def test_sklearn_estimator_is_stored_with_skops_and_reloads_exactly(shop: Path) -> None:
    result = _run(shop, "model.algorithm=sklearn.ensemble.HistGradientBoostingRegressor",
                  "model.params={max_iter: 60}", "acceptance.champion_tolerance=1.0",
                  "acceptance.latency_p99_ms=1000")
    assert result.gate.passed, result.gate.failed
    parity = next(c for c in result.gate.checks if c.name == "parity")
    assert parity.value == 0.0
    release = _registry(shop).load(result.version, shop / ".cd4ml" / "cache")
    assert (release.folder / "estimator" / "model.skops").is_file()
    assert type(release.estimator).__name__ == "HistGradientBoostingRegressor"


def test_failing_feature_tests_stop_the_pipeline_before_training(shop: Path) -> None:
    edit_yaml(shop, feature_tests="tests")
    features = shop / "features.py"
    fixed = features.read_text()
    stamp = features.stat().st_mtime_ns
    features.write_text(fixed.replace("(day == 15)", "(day == 14)"))  # a bug the tests catch
    os.utime(features, ns=(stamp, stamp))
    proc = cli(shop, "run", check=1)
    assert "tests/ failed" in proc.stderr and "stopped before training" in proc.stderr
    assert "test_paydays_are_the_15th" in proc.stderr
    assert _registry(shop).versions() == []  # nothing trained, nothing registered
    # Fixed within the same second, to a file of the same size (as `git revert` can): the fix is what is tested.
    features.write_text(fixed)
    os.utime(features, ns=(stamp, stamp))
    cli(shop, "run", check=0)


def _nullable_project(root: Path, *sets: str) -> Path:
    """A tiny CSV project whose int and bool inputs have empty values, ingested."""
    import pandas as pd

    from cd4ml.data.ingest import ingest
    from helpers import make_csv_project

    days = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.DataFrame([(d.date(), k) for d in days for k in (1, 2, 3)], columns=["t", "k"])
    i = np.arange(len(frame))
    frame["promo"] = pd.array(np.where(i % 5 == 0, None, i % 2), dtype="Int64")
    frame["flag"] = np.where(i % 7 == 0, "", np.where(i % 3 == 0, "true", "false"))
    frame["y"] = 10.0 + 3 * frame["promo"].fillna(0).astype(float) + frame["k"]
    columns = {"t": {"type": "date"}, "k": {"type": "int"}, "promo": {"type": "int", "nullable": True},
               "flag": {"type": "bool", "nullable": True}, "y": {"type": "float", "min": 0}}
    make_csv_project(root, frame.to_csv(index=False), columns, schema__keys=["t", "k"],
                     features__numeric=["promo", "flag", "dayofweek"], features__categorical=["k"])
    ingest(load_project(root))
    return root


def test_nullable_int_and_bool_inputs_train_end_to_end(tmp_path: Path) -> None:
    root = _nullable_project(tmp_path / "tiny")
    result = _run(root)
    assert result.version == "1" and result.data_version == 0
    hold = _holdout(root)
    assert hold["promo"].isna().any() and hold["flag"].isna().any()
    release = _registry(root).load(result.version, root / ".cd4ml" / "cache")
    pred = release.predict_frame(hold)
    assert np.isfinite(pred).all()
    assert result.metrics["rmse"] < result.baseline["rmse"]  # promo, nulls and all, is learned


CANNOT_FIT = {("model.params.n_estimators=abc",): "lightgbm could not be fitted",
              ("model.algorithm=sklearn.linear_model.Ridge", "model.params={}"):
              "sklearn.linear_model.Ridge could not be fitted: Input X contains NaN."}


def test_estimator_that_cannot_fit_is_a_config_error(tmp_path: Path) -> None:
    root = _nullable_project(tmp_path / "tiny")  # one project: each case fails before anything is stored
    for sets, message in CANNOT_FIT.items():
        proc = cli(root, "run", *[a for s in sets for a in ("--set", s)], check=2)
        stderr = " ".join(proc.stderr.split())
        assert message in stderr and "model.params" in stderr, (sets, stderr)
        assert "Traceback" not in stderr and "internal error" not in stderr, (sets, stderr)
        if "Ridge" in message:
            assert "lightgbm or sklearn.ensemble.HistGradientBoostingRegressor" in stderr
    assert _registry(root).versions() == []


def test_schema_column_missing_from_the_pinned_version_says_what_to_do(shop: Path) -> None:
    edit_yaml(shop, schema__columns__shelf_space={"type": "float", "nullable": True})
    proc = cli(shop, "run", check=1)
    stderr = " ".join(proc.stderr.split())
    assert "data version 0" in stderr and "has no column(s) shelf_space" in stderr
    assert "cd4ml data ingest" in stderr
    assert "Traceback" not in stderr and "internal error" not in stderr


def test_registry_reads_not_found_as_none_and_other_failures_as_errors(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from mlflow.tracking import MlflowClient

    from cd4ml.errors import ReleaseError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = Registry(MlflowClient(tracking_uri=uri, registry_uri=uri), "m", tmp_path)
    assert store.champion() is None and store.versions() == []  # no such model
    store.client.create_registered_model("m")
    assert store.champion() is None and store.versions() == []  # no champion alias
    with pytest.raises(ReleaseError, match="has no version 1"):
        store.version("1")

    with socket.socket() as s:  # a port nothing listens on: the registry cannot answer
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    offline = Registry(MlflowClient(tracking_uri=down, registry_uri=down), "m", tmp_path)
    for call in (offline.champion, offline.versions, lambda: offline.version("1")):
        with pytest.raises(ReleaseError, match="the model registry failed"):
            call()


def test_a_store_that_cannot_be_reached_stops_the_run_before_the_data_is_loaded(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from cd4ml.errors import Cd4mlError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # The CLI asks in a child process (MLflow is not loaded in it yet) ...
    proc = cli(shop, "run", "--set", f"tracking.uri={down}", check=1, process=True)
    assert f"cannot read the MLflow store at {down}: MlflowException" in proc.stderr
    assert "Traceback" not in proc.stderr
    # ... this process, with MLflow loaded, asks itself. --force skips no earlier run, but needs the store.
    import mlflow  # noqa: F401

    stages: list[str] = []
    with pytest.raises(Cd4mlError, match="cannot read the MLflow store"):
        _run(shop, f"tracking.uri={down}", force=True, on_stage=stages.append)
    assert stages == ["tests", "earlier_run"]
    assert not (shop / ".cd4ml" / "mlflow.db").exists()  # no embedded store made in its place


def test_a_rerun_with_nothing_changed_is_skipped_unless_forced(first_run: TrainedProject,
                                                              champion_shop: Path) -> None:
    shop, first = champion_shop, first_run.run
    # cd4ml's index holds the fingerprint MLflow tagged the run with (read back through MLflow).
    index = shop / ".cd4ml" / "runs"
    tagged = tracking.connect(load_project(shop)).get_run(first.run_id).data.tags[rerun.FINGERPRINT_TAG]
    assert sorted(p.name for p in (index / "fingerprints").iterdir()) == [tagged]
    again = _run(shop)
    assert again.skipped_as == first.run_id and again.version == first.version
    assert again.metrics == first.metrics and again.gate.passed and not again.promoted
    assert [str(v.version) for v in _registry(shop).versions()] == ["1"]
    out = json.loads(cli(shop, "run", "--json", check=0).stdout)
    assert out["skipped_as"] == first.run_id
    forced = _run(shop, force=True)
    assert forced.skipped_as is None and forced.version == "2" and forced.metrics == first.metrics
    # A rejected run, repeated, is skipped with its verdict: exit code 3 again.
    cli(shop, "run", "--set", "model.params.n_estimators=2", check=3)
    proc = cli(shop, "run", "--set", "model.params.n_estimators=2", check=3)
    assert "Nothing changed since run" in proc.stdout

    # A store older than the index (a project from before it): MLflow, asked by the CLI's child process,
    # answers and fills the index in.
    shutil.rmtree(index)
    proc = cli(shop, "run", "--set", "model.params.n_estimators=2", check=3, process=True)
    assert "Nothing changed since run" in proc.stdout
    assert len(list((index / "fingerprints").iterdir())) == 2 and (index / "complete").exists()
    assert _run(shop).skipped_as == forced.run_id


def test_the_store_is_opened_before_training_unless_the_index_rules_the_run_out(champion_shop: Path) -> None:
    shop = champion_shop
    (shop / ".cd4ml" / "mlflow.db").write_bytes(b"not a database")  # a store MLflow cannot open
    # The index rules --force's run out: the store is opened while the model trains, before registering.
    # (Each command in a process of its own: it opens the store anew, as a user's command does.)
    stderr = " ".join(cli(shop, "run", "--force", check=1, process=True).stderr.split())
    assert "cannot open the MLflow store" in stderr and "Traceback" not in stderr
    # Another MLflow than the one that last opened the store (as after an upgrade) opens it first,
    # before the data is loaded.
    (shop / ".cd4ml" / "runs" / "complete").write_text("0.0.1")
    stderr = " ".join(cli(shop, "run", "--force", check=1, process=True).stderr.split())
    assert "cannot read the MLflow store" in stderr and "Traceback" not in stderr
