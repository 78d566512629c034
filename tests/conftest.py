"""Shared fixtures: small real cd4ml projects in temp folders (real Delta tables, real MLflow stores)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cd4ml.scaffold import init_project

# A grocery world small enough for seconds-long runs, big enough to learn from.
SMALL_WORLD = {"n_stores": 3, "n_items": 40, "seed": 7, "start": "2024-01-01", "end": "2024-08-31"}
SMALL_MODEL = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "n_jobs": 1}


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def commit_all(root: Path, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", message)


def edit_yaml(root: Path, **changes: Any) -> None:
    """Set dotted keys in the project's cd4ml.yaml (a test's way of editing the file)."""
    path = root / "cd4ml.yaml"
    raw = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def make_grocery_project(root: Path) -> Path:
    init_project(root, "groceries")
    edit_yaml(root, source__options=SMALL_WORLD, model__params=SMALL_MODEL,
              acceptance__thresholds={"nwrmsle": {"max": 1.0}})
    _git(root, "init", "-q")
    commit_all(root, "init")
    return root


def cli(root: Path, *args: str, check: int | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `cd4ml` CLI in a subprocess; optionally assert its exit code."""
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", *args], cwd=root, capture_output=True,
                          text=True, env={**base, "COLUMNS": "200", **(env or {})})
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def ingested_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small grocery project with its data ingested once (copied per test)."""
    from cd4ml.config import load_project
    from cd4ml.data.ingest import ingest

    root = make_grocery_project(tmp_path_factory.mktemp("template") / "shop")
    ingest(load_project(root))
    return root


@pytest.fixture
def shop(ingested_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small grocery project: table ingested, no runs, no registry."""
    root = tmp_path / "shop"
    shutil.copytree(ingested_template, root, symlinks=True)
    return root
