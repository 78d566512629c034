"""The runtime settings chosen by the `cd4ml` command: OpenMP's wait policy for a fit, from the load.

Each case that depends on when a library loads runs in a fresh interpreter: this test process
may hold LightGBM (and OpenMP) already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cd4ml import runtime

# One deterministic CPU-bound process: the "busy neighbour" (a service, a test suite).
BURNER = "x = 1\nwhile True:\n    x = (x * 48271) % 2147483647\n"


@pytest.fixture
def busy_neighbour() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _fresh(code: str, **env: str) -> dict:
    """Run `code` in a fresh interpreter (no OpenMP variables of ours); it prints one JSON line last."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CHOOSE = """
import json, os
from cd4ml import runtime
choice = runtime.openmp_for_fit()
print(json.dumps({**choice.to_dict(), "env": os.environ.get("OMP_WAIT_POLICY")}))
"""


def test_a_busy_neighbour_makes_the_fit_threads_sleep(busy_neighbour: subprocess.Popen) -> None:
    got = _fresh(CHOOSE)
    assert got["busy_cores"] >= runtime.BUSY_CORES_FOR_PASSIVE, got
    assert got["policy"] == "PASSIVE" and got["env"] == "PASSIVE", got
    assert "busy" in got["reason"]


def test_the_users_setting_wins(busy_neighbour: subprocess.Popen) -> None:
    got = _fresh(CHOOSE, OMP_WAIT_POLICY="ACTIVE")
    assert (got["policy"], got["env"], got["busy_cores"]) == ("ACTIVE", "ACTIVE", None)
    assert got["reason"] == "OMP_WAIT_POLICY set by the user"
    got = _fresh(CHOOSE, GOMP_SPINCOUNT="10000")
    assert (got["policy"], got["env"]) == ("GOMP_SPINCOUNT", None)


def test_too_late_once_lightgbm_is_loaded(busy_neighbour: subprocess.Popen) -> None:
    """libgomp reads the policy when LightGBM's import loads it: after that, setting it would be a lie."""
    got = _fresh("from cd4ml.release.estimators import import_lightgbm\nimport_lightgbm()\n" + CHOOSE)
    assert (got["policy"], got["env"]) == ("unchanged", None), got


def test_openmp_is_not_loaded_before_the_run_command_chooses() -> None:
    """`cd4ml run` chooses first thing; by then the CLI's imports must not have loaded libgomp, which
    would have read its settings already. LightGBM's import is what loads it."""
    got = _fresh("""
import json
from pathlib import Path
maps = lambda: "libgomp" in Path("/proc/self/maps").read_text()
import cd4ml.cli
before = maps()
from cd4ml.release.estimators import import_lightgbm
import_lightgbm()
print(json.dumps({"before": before, "after": maps()}))
""")
    assert got == {"before": False, "after": True}


@pytest.mark.parametrize(("busy", "policy"), [(None, "PASSIVE"), (0.0, "default"), (0.49, "default"),
                                               (0.5, "PASSIVE"), (1.7, "PASSIVE")])
def test_policy_by_load(busy: float | None, policy: str) -> None:
    choice = runtime.choose_wait_policy(busy)
    assert (choice.policy, choice.busy_cores) == (policy, busy)


def test_unreadable_or_frozen_counters_are_unknown(tmp_path) -> None:
    assert runtime.busy_cores(0.01, tmp_path / "missing") is None
    frozen = tmp_path / "stat"
    frozen.write_text("cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 1 2 3 4\n", encoding="ascii")
    assert runtime.busy_cores(0.01, frozen) is None  # no tick passed: nothing to divide by
    frozen.write_text("cpu  garbage\n", encoding="ascii")
    assert runtime.busy_cores(0.01, frozen) is None


def test_measured_load_counts_a_busy_core(busy_neighbour: subprocess.Popen) -> None:
    busy = runtime.busy_cores(0.3)
    assert busy is not None and 0.5 <= busy <= (os.cpu_count() or 1) + 0.01
