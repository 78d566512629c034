"""A new project's store is a copy of the empty store MLflow made once (cd4ml.empty_store).

Each test gives the commands a cache folder of its own (XDG_CACHE_HOME).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from cd4ml import empty_store
from helpers import cli


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "cd4ml"


def _first_run(project: Path) -> dict:
    result = json.loads(cli(project, "run", "--json", check=0).stdout)
    assert result["version"] == "1" and result["promoted"], result
    return result


def _experiments(project: Path) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / '.cd4ml' / 'mlflow.db'}")
    return {e.name: e.artifact_location for e in client.search_experiments()}


def test_two_new_projects_start_from_the_one_empty_store(shop: Path, ingested_template: Path, tmp_path: Path,
                                                         cache: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(ingested_template, other, symlinks=True)
    _first_run(shop)
    (template,) = cache.glob("mlflow-*-empty-*.db")
    made = template.stat().st_mtime_ns
    _first_run(other)
    assert template.stat().st_mtime_ns == made  # the second project did not make it again
    for project in (shop, other):
        releases = json.loads(cli(project, "releases", "--json", check=0).stdout)
        assert [(r["version"], r["champion"]) for r in releases] == [("1", True)]
        # The project's runs live in the project; only MLflow's unused Default experiment points elsewhere.
        experiments = _experiments(project)
        assert experiments["Default"].startswith(str(cache))
        assert experiments["groceries"] == "cd4ml-state:/mlartifacts"


def test_a_damaged_cached_store_is_made_again(shop: Path, tmp_path: Path, cache: Path) -> None:
    """Another SQLite file put in the cached store's place (one MLflow cannot use) is never copied."""
    assert empty_store.seed(tmp_path / "first.db")
    (template,) = cache.glob("mlflow-*-empty-*.db")
    template.unlink()
    with sqlite3.connect(template) as con:
        con.execute("CREATE TABLE experiments (x INTEGER)")
    _first_run(shop)
    assert not template.exists()
    (remade,) = cache.glob("mlflow-*-empty-*.db")
    assert remade.read_bytes().startswith(b"SQLite format 3\x00")


def test_without_a_writable_cache_mlflow_makes_the_store(shop: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    _first_run(shop)
    assert "Default" in _experiments(shop)


def test_a_store_already_there_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    """Eight commands seeding one new project at once: one copy lands, the others keep it."""
    assert empty_store.seed(tmp_path / "first.db")  # the cached store is made first
    db = tmp_path / "state" / "mlflow.db"
    db.parent.mkdir()
    outcomes: list[bool] = []
    start = threading.Barrier(8)

    def seed() -> None:
        start.wait()
        outcomes.append(empty_store.seed(db))

    threads = [threading.Thread(target=seed) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]
    assert db.read_bytes().startswith(b"SQLite format 3\x00")
    assert [p.name for p in db.parent.iterdir()] == ["mlflow.db"]  # no partial copy left behind

    db.write_bytes(b"a store with runs in it")
    assert empty_store.seed(db) is False
    assert db.read_bytes() == b"a store with runs in it"
