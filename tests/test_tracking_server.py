"""Any MLflow server URI works unchanged: the pipeline against a real `mlflow server` on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from helpers import cli, mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture
def server_store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "server"
    store.mkdir()
    with mlflow_server("--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination",
                       (store / "artifacts").as_uri()) as url:
        yield url, store


def test_pipeline_and_rollback_against_an_mlflow_server(shop: Path, server_store: tuple[str, Path]) -> None:
    url, store = server_store

    def cd4ml(*args: str) -> str:
        # MLFLOW_TRACKING_URI is read when cd4ml.tracking loads: each command in a process of its own.
        return cli(shop, *args, check=0, env={"MLFLOW_TRACKING_URI": url}, process=True).stdout

    first = json.loads(cd4ml("run", "--json"))
    second = json.loads(cd4ml("run", "--json", "--set", "model.params.n_estimators=61"))
    assert first["version"] == "1" and second["gate"]["passed"]
    cd4ml("rollback")
    releases = json.loads(cd4ml("releases", "--json"))
    assert [(r["version"], r["champion"]) for r in releases] == [("2", False), ("1", True)]
    # Everything went to the server's stores, nothing to the embedded default.
    assert not (shop / ".cd4ml" / "mlflow.db").exists()
    assert any((store / "artifacts").rglob("release.json"))
