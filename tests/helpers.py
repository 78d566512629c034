"""Test helpers: small real cd4ml projects, the real CLI, and a real `cd4ml serve` on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cd4ml.config import edit_project_file, load_project, parse_overrides
from cd4ml.scaffold import init_project
from cd4ml.serve.process import ServiceProcess, free_port
from cd4ml.pipeline.run import RunResult, run_pipeline

if TYPE_CHECKING:  # cd4ml.cli is imported by prepare_in_process_cli, without COLUMNS
    from cd4ml.cli import CommandResult

# A grocery world small enough for seconds-long runs, big enough to learn from.
SMALL_WORLD = {"n_stores": 3, "n_items": 40, "seed": 7, "start": "2024-01-01", "end": "2024-08-31"}
# One valid /predict record of that world.
GOOD_REQUEST = {"date": "2024-08-20", "store_nbr": 2, "item_nbr": 100005, "onpromotion": 1}
SMALL_MODEL = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "n_jobs": 1}


def system_tool(command: str, package: str) -> str:
    """The path of a command from a Debian package the tests use; a missing one fails the test, never
    skips it (`make test` installs these packages: scripts/system-packages.sh)."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} not found on PATH: install Debian's `{package}` package "
                    f"(`make test` does it, or: apt-get install -y {package})")
    return path


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def commit_all(root: Path, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", message)


def edit_yaml(root: Path, **changes: Any) -> None:
    """Set keys in the project's cd4ml.yaml; `a__b=1` sets a.b (keyword arguments cannot hold dots)."""
    edit_project_file(root, {k.replace("__", "."): v for k, v in changes.items()})


def shrink_grocery_project(root: Path, *, feature_tests: bool = False) -> None:
    """The grocery example's cd4ml.yaml on SMALL_WORLD and SMALL_MODEL, without history features."""
    # The latency budget is the gate's own business (unit-tested); a busy test machine must not flake it.
    # The feature-tests stage and the plots have their own tests; elsewhere they only cost time.
    # History features have their own tests (test_history_features.py, the demo); without them a request may
    # be for any date, as the serving and monitoring tests' requests are.
    edit_yaml(root, source__options=SMALL_WORLD, model__params=SMALL_MODEL, tracking__plots=False,
              features__history=None,
              acceptance__thresholds={"nwrmsle": {"max": 1.0}}, acceptance__latency_p99_ms=1000,
              **({} if feature_tests else {"feature_tests": None}))


def git_init(root: Path) -> None:
    """A git repository at `root` with everything in it committed."""
    _git(root, "init", "-q")
    commit_all(root, "init")


def make_grocery_project(root: Path) -> Path:
    init_project(root, "groceries")
    shrink_grocery_project(root)
    git_init(root)
    return root


def cli(root: Path, *args: str, check: int | None = None, env: dict[str, str] | None = None,
        process: bool = False) -> CommandResult:
    """Run the real `cd4ml` CLI in `root`; optionally assert its exit code.

    In this process by default (MLflow is imported once per test process, not once per command);
    `process=True` starts `python -m cd4ml.cli` instead, for what only a process of its own shows: a
    crash point's kill -9, commands that overlap, settings read when a module loads (MLFLOW_TRACKING_URI
    is read when cd4ml.tracking loads), a store opened anew (MLflow keeps one open per URI and process),
    a run whose earlier-run lookup must be a child process.
    """
    from cd4ml.cli import run_in_process

    overrides = {"MLFLOW_TRACKING_URI": None, "COLUMNS": "200", **(env or {})}
    result = _cli_process(root, args, overrides) if process else run_in_process(root, args, overrides)
    if check is not None:
        assert result.returncode == check, (f"cd4ml {' '.join(args)}: exit {result.returncode}, expected {check}\n"
                                            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def _cli_process(root: Path, args: tuple[str, ...], overrides: dict[str, str | None]) -> CommandResult:
    from cd4ml.cli import CommandResult

    environ = {**os.environ, **overrides}
    proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", *args], cwd=root, capture_output=True, text=True,
                          env={k: v for k, v in environ.items() if v is not None})
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def prepare_in_process_cli() -> None:
    """Make, once, the process-wide settings an in-process command would make the first time, so that
    no command changes the test process for the tests after it.

    The libraries that read a setting when they load (LightGBM's OpenMP, Arrow's allocator) are loaded
    first, so `runtime` finds them loaded; glibc's allocator threshold is set as the commands set it.
    MLflow is loaded too: `cd4ml run` then always asks for an earlier run in this process, never in a
    child process started only while MLflow is not loaded yet (see cd4ml.pipeline.rerun). The CLI's Rich
    consoles are made without COLUMNS, so each command's width follows the COLUMNS it is given.
    """
    import pyarrow  # noqa: F401

    from cd4ml import runtime, tracking
    from cd4ml.release.estimators import import_lightgbm

    environ = dict(os.environ)
    os.environ.pop("COLUMNS", None)
    try:
        import cd4ml.cli  # noqa: F401

        import_lightgbm()
        tracking.import_mlflow()
        runtime.return_freed_memory()
    finally:
        os.environ.clear()
        os.environ.update(environ)


class Service(ServiceProcess):
    """A real `cd4ml serve` on 127.0.0.1 with an httpx client; stopped on exit of the `with` block."""

    def __init__(self, project: Path, *extra: str, poll: float = 0.3) -> None:
        super().__init__(project, *extra, poll=poll)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> int:
        self.client.close()
        return super().stop()

    def __enter__(self) -> "Service":
        self.wait_until("/health", 200)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stored_release(root: Path, version: str) -> Path:
    """The folder of the artifact store (not the cache) that holds `version`'s model: where the service
    and the gate fetch it from."""
    from cd4ml.release.registry import Registry
    from cd4ml.tracking import STATE_SCHEME

    registry = Registry.for_project(load_project(root))
    uri = registry.client.get_model_version_download_uri(registry.name, version)
    assert uri.startswith(f"{STATE_SCHEME}:/"), uri  # the embedded store: relative to the project's .cd4ml/
    return root / ".cd4ml" / uri.removeprefix(f"{STATE_SCHEME}:/")


def train(root: Path, *sets: str, promote: bool | None = None) -> RunResult:
    return run_pipeline(load_project(root, parse_overrides(list(sets))), promote=promote)


@dataclass(frozen=True)
class TrainedProject:
    """A project trained once per session (a template: tests copy `root`) and what its run returned."""

    root: Path
    run: RunResult


def make_csv_project(root: Path, csv: str, columns: dict[str, dict[str, Any]], **changes: Any) -> Path:
    """A tiny project over one CSV file (`csv` is its text): time column `t`, target `y`, `columns` as schema.

    `changes` are edit_yaml's dotted keys (`features__numeric=[...]`).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.csv").write_text(csv)
    config = {"project": "tiny", "source": {"path": "data.csv"}, "data": {"max_null_rate": 1.0},
              "schema": {"columns": columns}, "target": "y", "time_column": "t",
              "features": {"calendar": ["dayofweek"], "numeric": ["dayofweek"]}, "split": {"holdout_days": 7},
              "model": {"params": {"n_estimators": 10, "min_child_samples": 5, "n_jobs": 1}},
              "acceptance": {"beat_baseline": False, "latency_p99_ms": 1000},
              "registry": {"model_name": "tiny"}, "feature_tests": None}
    (root / "cd4ml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    edit_yaml(root, **changes)
    return root


@contextlib.contextmanager
def mlflow_server(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with these extra arguments; yields its URL once healthy."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", *args], cwd=cwd, env={**base, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """GET /metrics on a fresh connection (so with several workers any of them may answer)."""
    resp = httpx.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


DEMO_CHAPTERS = ("1. Plumbing", "2. Data science", "3. ML engineering", "4. Continuous deployment", "5. Undo",
                 "6. In the wild")


def play_demo(tmp_path: Path, *options: str) -> tuple[str, str]:
    """`cd4ml demo` in a child process, as `make demo` runs it: (stdout, the HTML report). Fails the test
    unless it exits 0 and tells every chapter. The user's shell points MLFLOW_TRACKING_URI at a team's
    store: the demo must play on its own and leave that one alone."""
    import os
    import subprocess
    import sys

    report, team_store = tmp_path / "report.html", tmp_path / "team-store.db"
    env = {**os.environ, "COLUMNS": "200", "MLFLOW_TRACKING_URI": f"sqlite:///{team_store}"}
    proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", "demo", *options, "--dir", str(tmp_path / "scratch"),
                           "--report", str(report)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert [c for c in DEMO_CHAPTERS if c not in proc.stdout] == []
    assert not team_store.exists(), "the demo wrote to the store MLFLOW_TRACKING_URI names"
    return proc.stdout, report.read_text()


def assert_demo_served_and_logged(out: str, min_served: int) -> None:
    """The demo's summary: more than `min_served` requests, none failed, every prediction in the log."""
    import re

    served, failed = map(int, re.search(r"requests served: (\d+) .*failed: (\d+)", out).groups())
    assert served > min_served and failed == 0
    logged = int(re.search(r"predictions logged: (\d+)", out).group(1))
    assert logged == int(re.search(r"\((\d+) predictions\)", out).group(1))
