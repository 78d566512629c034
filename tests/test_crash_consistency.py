"""kill -9 of `promote`, `rollback` and `run` between the steps of a registry move (CD4ML_CRASH_AT names
the point): afterwards the alias and the release history agree, nothing is left pending without a way
out, and the champion loads and predicts."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from cd4ml.config import load_project
from cd4ml.data.table import TrainingTable
from cd4ml.release.registry import ABANDONED, Registry
from helpers import cli

KILLED = -signal.SIGKILL


def _registry(root: Path) -> Registry:
    return Registry.for_project(load_project(root))


def _killed_at(root: Path, point: str, *args: str) -> None:
    proc = cli(root, *args, env={"CD4ML_CRASH_AT": point}, process=True)
    assert proc.returncode == KILLED, f"{args} at {point}: exit {proc.returncode}\n{proc.stderr[-2000:]}"


def _assert_consistent(root: Path, champion: str | None) -> None:
    """The champion is `champion`, the newest done move points at it, no move is half done, and it predicts."""
    registry = _registry(root)
    now = registry.champion()
    assert (str(now.version) if now else None) == champion
    assert registry.interrupted_moves() == []
    history = registry.history()
    assert (history[-1].to_version if history else None) == champion
    if champion is not None:
        release = registry.load(champion, root / ".cd4ml" / "cache" / "releases")
        frame, _ = TrainingTable.for_project(load_project(root)).read()
        assert np.isfinite(release.predict_frame(frame.tail(50))).all()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["move.begun", "move.aliased"])
def test_a_killed_promote_or_rollback_is_settled_by_the_next_command(two_versions_shop: Path, point: str) -> None:
    root = two_versions_shop
    moved = point == "move.aliased"

    _killed_at(root, point, "promote", "2")
    listing = cli(root, "releases", check=0).stdout
    assert "A move of champion (promote v1 -> v2" in listing and "is not marked done" in listing
    assert str(_registry(root).champion().version) == ("2" if moved else "1")
    clean = cli(root, "releases", "--clean", check=0).stdout
    assert ("recorded as done" if moved else "dropped") in clean
    _assert_consistent(root, "2" if moved else "1")
    if not moved:
        cli(root, "promote", "2", check=0)

    # A rollback killed the same way is settled by whatever moves the alias next, here a promote.
    _killed_at(root, point, "rollback")
    assert str(_registry(root).champion().version) == ("1" if moved else "2")
    if moved:
        cli(root, "promote", "2", check=0)  # settles the rollback as done (1 is champion), then moves
    else:
        cli(root, "rollback", check=0)  # settles the half-done rollback as dropped, then rolls back
    _assert_consistent(root, "2" if moved else "1")
    kinds = [e.kind for e in _registry(root).history()]
    assert kinds == (["auto-promote", "promote", "rollback", "promote"] if moved else
                     ["auto-promote", "promote", "rollback"])


@pytest.mark.slow
def test_killed_runs_resume_their_promotion_or_leave_a_cleanable_leftover(shop: Path) -> None:
    root = shop
    _killed_at(root, "run.registered", "run")  # registered, no verdict yet
    listing = cli(root, "releases", check=0).stdout
    assert "Version 1 is pending, but the run that registered it" in listing
    assert "version 1: abandoned" in cli(root, "releases", "--clean", check=0).stdout
    assert _registry(root).version("1").tags["cd4ml.gate"] == ABANDONED
    assert cli(root, "promote", "1", check=1).returncode == 1  # no verdict: not promotable without --force
    _assert_consistent(root, None)

    # The killed run's fingerprint is in cd4ml's index (made before the run was tagged), but it gave
    # no verdict: MLflow, asked, finds no finished run, so this one is not skipped: version 2.
    assert len(list((root / ".cd4ml" / "runs" / "fingerprints").iterdir())) == 1
    cli(root, "run", check=0)
    _assert_consistent(root, "2")

    # Killed between the verdict and the promotion: the same run again carries the promotion out.
    _killed_at(root, "run.judged", "run", "--set", "model.params.n_estimators=61")
    _assert_consistent(root, "2")
    out = cli(root, "run", "--set", "model.params.n_estimators=61", check=0).stdout
    assert "its promotion had been interrupted: carried out now" in out and "Version 3 is now champion" in out
    _assert_consistent(root, "3")

    # Killed after the alias moved, before the move was marked done: the rerun settles it and does no more.
    _killed_at(root, "move.aliased", "run", "--set", "model.params.n_estimators=62")
    out = cli(root, "run", "--set", "model.params.n_estimators=62", check=0).stdout
    assert "Nothing changed" in out and "now champion" not in out
    _assert_consistent(root, "4")
    assert [(e.kind, e.from_version, e.to_version) for e in _registry(root).history()] == [
        ("auto-promote", None, "2"), ("auto-promote", "2", "3"), ("auto-promote", "3", "4")]
