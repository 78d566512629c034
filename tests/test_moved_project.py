"""A project folder can be moved, copied or checked out elsewhere: the embedded store names its
artifacts relative to the project (issue 15, item 10)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from helpers import GOOD_REQUEST, Service, cli, mlflow_server, train

pytestmark = pytest.mark.slow


def _files_naming(root: Path, text: str) -> list[Path]:
    # Python's bytecode cache names the source it was compiled from; Python corrects that name on load.
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and not {".git", "__pycache__"} & set(p.parts)
            and needle in p.read_bytes()]


def test_train_move_serve_run_and_browse(shop: Path, tmp_path: Path) -> None:
    # Trained here, not copied from a template: no file may name the folder the run was made in.
    assert train(shop).promoted
    with Service(shop) as service:  # leaves a release cache and a champion pointer behind
        service.wait_until("/ready", 200)
        before = service.client.post("/predict", json=GOOD_REQUEST).json()["prediction"]
    moved = tmp_path / "elsewhere" / "shop"
    moved.parent.mkdir()
    shutil.move(shop, moved)
    # Nothing the project keeps (store, artifacts, tables, cache, logs) names the old folder.
    assert _files_naming(moved, str(shop)) == []

    with Service(moved) as service:
        service.wait_until("/ready", 200)
        answer = service.client.post("/predict", json=GOOD_REQUEST).json()
        assert (answer["model_version"], answer["prediction"]) == ("1", before)

    again = json.loads(cli(moved, "run", "--json", check=0).stdout)
    assert again["skipped_as"] is not None  # the same data, code and config: the earlier run, found
    changed = json.loads(cli(moved, "run", "--json", "--set", "model.params.n_estimators=61", check=0).stdout)
    assert changed["version"] == "2" and changed["gate"]["passed"]
    assert not shop.exists()  # nothing was written to where the project used to be

    # A copy is a project of its own: moving its champion leaves the original's alone.
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy, symlinks=True)
    cli(copy, "rollback", check=0)
    champions = [[r["version"] for r in json.loads(cli(p, "releases", "--json", check=0).stdout) if r["champion"]]
                 for p in (moved, copy)]
    assert champions == [["2"], ["1"]]

    # The README's way to browse the store, from the moved folder: MLflow's own server finds the artifacts.
    run_id = changed["run_id"]
    with mlflow_server(cwd=moved, env={"MLFLOW_BACKEND_STORE_URI": "sqlite:///.cd4ml/mlflow.db"}) as url:
        with urllib.request.urlopen(f"{url}/get-artifact?path=gate/report.json&run_uuid={run_id}", timeout=30) as resp:
            assert json.loads(resp.read())["passed"] is True
