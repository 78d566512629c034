"""Two commands that move `champion` at once take turns: each move is judged on what the other left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml.config import load_project
from cd4ml.release.registry import Registry
from cd4ml.pipeline.rerun import GATE_CHAMPION_TAG

# Each trial starts two CLI processes (each trial of runs also trains two models): the suite runs a few
# to bound its time; CD4ML_ROLLBACK_TRIALS=10 CD4ML_RUN_TRIALS=10 for the full count.
ROLLBACK_TRIALS = int(os.environ.get("CD4ML_ROLLBACK_TRIALS", "4"))
RUN_TRIALS = int(os.environ.get("CD4ML_RUN_TRIALS", "2"))


def _start(root: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "cd4ml.cli", *args], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _together(root: Path, *commands: tuple[str, ...]) -> list[tuple[int, str]]:
    procs = [_start(root, *args) for args in commands]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        outcomes.append((p.returncode, out + err))
    return outcomes


@pytest.mark.slow
def test_two_rollbacks_at_once_roll_back_once(two_versions_shop: Path) -> None:
    root = two_versions_shop
    registry = Registry.for_project(load_project(root))
    for trial in range(ROLLBACK_TRIALS):
        registry.promote("2", kind="promote", why="manual promote")  # in this process: the race is the rollbacks'
        outcomes = _together(root, ("rollback",), ("rollback",))
        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, 1], f"trial {trial}: {outcomes}"
        assert "no earlier champion" in next(text for code, text in outcomes if code == 1)
        assert str(registry.champion().version) == "1"
    history = [(e.kind, e.from_version, e.to_version) for e in registry.history()]
    assert history == [("auto-promote", None, "1")] + [("promote", "1", "2"), ("rollback", "2", "1")] * ROLLBACK_TRIALS


@pytest.mark.slow
def test_overlapping_runs_are_each_judged_against_the_champion_the_other_left(champion_shop: Path) -> None:
    root = champion_shop
    registry = Registry.for_project(load_project(root))
    for trial in range(RUN_TRIALS):
        trees = 61 + 2 * trial
        outcomes = _together(root, ("run", "--set", f"model.params.n_estimators={trees}"),
                             ("run", "--set", f"model.params.n_estimators={trees + 1}"))
        assert all(code in (0, 3) for code, _ in outcomes), outcomes
    history = registry.history()
    assert history[-1].to_version == str(registry.champion().version)
    # Every promotion's gate compared the candidate with the champion of the moment it was promoted.
    for event in history[1:]:
        run_id = registry.version(event.to_version).tags["cd4ml.run_id"]
        judged_against = registry.client.get_run(run_id).data.tags[GATE_CHAMPION_TAG]
        assert judged_against == event.from_version, (event, judged_against)
