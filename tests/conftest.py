"""Shared fixtures: small real cd4ml projects in temp folders (real Delta tables, real MLflow stores)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from helpers import (Service, TrainedProject, commit_all, edit_yaml, make_grocery_project, prepare_in_process_cli,
                     system_tool, train)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]

# The longest files, longest first: with `pytest -n 2 --dist loadfile` (make test) the two workers
# take files in this order and the short ones fill in at the end, so neither worker is left alone
# with a long file (alphabetical order put test_pipeline and test_registry_concurrency last).
# xdist hands a worker its next file as soon as it has 2 tests or fewer queued, so the grocery demo's
# worker gets the churn demo at once. Sending the demos to different workers (test_pipeline third) was
# tried and did not make the suite faster (issue 16).
LONGEST_FIRST = ("tests/test_demo.py", "tests/test_plain_install.py", "tests/test_demo_churn.py",
                 "tests/test_own_data.py", "tests/test_pipeline.py", "tests/test_registry_concurrency.py",
                 "tests/test_crash_consistency.py", "tests/serve/test_service.py", "tests/test_tracking_server.py",
                 "tests/test_moved_project.py", "tests/serve/test_release_integrity.py", "tests/test_empty_store.py",
                 "tests/test_classification_run.py", "tests/serve/test_worker_swaps.py",
                 "tests/monitor/test_honest_monitoring.py", "tests/monitor/test_feedback_loop.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def in_process_cli() -> None:
    """helpers.cli runs commands in this process: what they set process-wide is set before any test."""
    prepare_in_process_cli()


def _copy(template: Path, into: Path) -> Path:
    root = into / "shop"
    shutil.copytree(template, root, symlinks=True)
    return root


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
    return _copy(ingested_template, tmp_path)


@pytest.fixture(scope="session")
def first_run(ingested_template: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedProject:
    """The small grocery project's first `cd4ml run`, once: version 1, champion, with its plots."""
    root = _copy(ingested_template, tmp_path_factory.mktemp("champion"))
    edit_yaml(root, tracking__plots=True)  # in the file: a rerun of this project is this run again
    commit_all(root, "plots drawn")
    run = train(root)
    assert run.promoted
    return TrainedProject(root, run)


@pytest.fixture(scope="session")
def champion_template(first_run: TrainedProject) -> Path:
    """The small grocery project with version 1 trained and champion, once (copied per test: the
    embedded store names its artifacts relative to the project)."""
    return first_run.root


@pytest.fixture
def champion_shop(champion_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small grocery project with version 1 as champion."""
    return _copy(champion_template, tmp_path)


@pytest.fixture(scope="session")
def two_versions_template(champion_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`champion_template` plus version 2 (61 trees): passed the gate, not promoted. Once: the
    swap, rollback and crash tests each start from it."""
    root = _copy(champion_template, tmp_path_factory.mktemp("two-versions"))
    assert train(root, "model.params.n_estimators=61", promote=False).gate.passed
    return root


@pytest.fixture
def two_versions_shop(two_versions_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the grocery project with version 1 champion and version 2 passed, not promoted."""
    return _copy(two_versions_template, tmp_path)


@pytest.fixture(scope="module")
def served_shop(champion_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A champion project shared by one module's read-only service tests."""
    return _copy(champion_template, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def service(served_shop: Path) -> Iterator[Service]:
    """One running service per module, over `served_shop`: for tests that only send requests."""
    with Service(served_shop) as svc:
        svc.wait_until("/ready", 200)
        yield svc


@pytest.fixture(scope="session")
def browser() -> Iterator["Browser"]:
    """One real headless Chromium (Playwright) for every page test of the session."""
    from playwright.sync_api import sync_playwright

    chromium = system_tool("chromium", "chromium")  # Debian's: no browser download
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
