"""`make test` sets up the Debian packages the tests use (scripts/system-packages.sh), and `.ci/run` is
nothing but that command.

The "missing" cases run the real script and the real `make` with a PATH that holds none of the tools,
as an unprivileged user without sudo (when the tests run as root), so the refusing branch is what runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "system-packages.sh"
NOBODY = 65534


@pytest.fixture
def bare_repo() -> Iterator[Path]:
    """The Makefile and the script in a folder any user can read, and a bin/ with only what make needs."""
    root = Path(tempfile.mkdtemp(prefix="cd4ml-setup-"))
    try:
        (root / "scripts").mkdir()
        shutil.copy(REPO / "Makefile", root)
        shutil.copy(SCRIPT, root / "scripts")
        (root / "bin").mkdir()
        for tool in ("bash", "id", "make", "env"):
            (root / "bin" / tool).symlink_to(shutil.which(tool) or pytest.fail(f"{tool} not found"))
        for path in (root, root / "scripts", root / "bin"):
            path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def _run_without_tools(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    """`cmd` with only root/bin on PATH, as an unprivileged user if this process is root."""
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(cmd, cwd=root, env={"PATH": str(root / "bin")}, capture_output=True, text=True,
                          timeout=60, **user)


def test_present_tools_need_nothing() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_missing_tools_without_root_or_sudo_stop_with_one_line(bare_repo: Path) -> None:
    proc = _run_without_tools(["bash", "scripts/system-packages.sh"], bare_repo)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "missing Debian packages: chromium prometheus; install them with: "
        "sudo apt-get update && sudo apt-get install -y chromium prometheus"]
    # Another target's pairs: each package named once, in the order asked.
    proc = _run_without_tools(["bash", "scripts/system-packages.sh", "promtool:prometheus", "wrk:wrk",
                               "prometheus:prometheus", "id:coreutils"], bare_repo)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith("missing Debian packages: prometheus wrk; ")


def test_make_test_stops_before_building_the_venv(bare_repo: Path) -> None:
    proc = _run_without_tools(["make", "test"], bare_repo)
    assert proc.returncode != 0
    assert "missing Debian packages: chromium prometheus; install them with: sudo apt-get" in proc.stderr
    assert not (bare_repo / ".venv").exists(), "make test built the venv before it stopped"


@pytest.mark.parametrize("arg", ["chromium", ":chromium", "chromium:"])
def test_an_argument_that_is_not_a_pair_is_a_usage_error(arg: str) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), arg], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"argument '{arg}' is not COMMAND:PACKAGE" in proc.stderr


def test_ci_runs_the_readme_test_command_and_nothing_more() -> None:
    steps = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert steps == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]
    assert "make test   #" in (REPO / "README.md").read_text().split("\n\n")[1]
