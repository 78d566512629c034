"""Any MLflow server URI works unchanged: the pipeline against a real `mlflow server` on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cd4ml.serve.process import free_port
from helpers import cli

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination",
         (store / "artifacts").as_uri(), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not start")
        time.sleep(0.5)
    yield url, store
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_pipeline_and_rollback_against_an_mlflow_server(shop: Path, mlflow_server) -> None:
    url, store = mlflow_server
    env = {"MLFLOW_TRACKING_URI": url}
    first = json.loads(cli(shop, "run", "--json", check=0, env=env).stdout)
    second = json.loads(cli(shop, "run", "--json", "--set", "model.params.n_estimators=61", check=0, env=env).stdout)
    assert first["version"] == "1" and second["gate"]["passed"]
    cli(shop, "rollback", check=0, env=env)
    releases = json.loads(cli(shop, "releases", "--json", check=0, env=env).stdout)
    assert [(r["version"], r["champion"]) for r in releases] == [("2", False), ("1", True)]
    # Everything went to the server's stores, nothing to the embedded default.
    assert not (shop / ".cd4ml" / "mlflow.db").exists()
    assert any((store / "artifacts").rglob("release.json"))
