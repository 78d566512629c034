"""A plain install runs every command: the built wheel in a new venv, without extras.

Every module of the package is imported there, every command's `--help` runs through the installed
`cd4ml` script, and the main job's path runs for real on the small grocery world: `cd4ml init`,
`data ingest`, `run` (with the project's own tests, which need pytest at run time), then `cd4ml serve`
answers a prediction and serves /docs with its assets. A module that needs a package only the `test`
extra brings (httpx once made `cd4ml demo` fail so) fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cd4ml.serve.process import free_port
from helpers import git_init, shrink_grocery_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

# Run by the venv's Python: imports every module of the installed package, then asks every command
# and subcommand for its --help (in this one process: a process each took 3 s apiece on a busy machine).
SURVEY = """
import contextlib, importlib, importlib.util, io, json, pkgutil
import cd4ml
from typer.main import get_command
from cd4ml.cli import app

failed = {}
def note(name):
    failed[name] = "cannot import while walking the package"
modules = [m.name for m in pkgutil.walk_packages(cd4ml.__path__, "cd4ml.", onerror=note)]
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"

def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, [*prefix, name])

helps = {}
for path in paths(get_command(app), []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            app(args=[*path, "--help"], prog_name="cd4ml")
            code = 0
        except SystemExit as exc:
            code = exc.code
    helps[" ".join(path)] = [code, out.getvalue().strip()[:200]]
test_only = [name for name in ("playwright", "xdist") if importlib.util.find_spec(name)]
print(json.dumps({"file": cd4ml.__file__, "modules": modules, "failed": failed, "helps": helps,
                  "test_only": test_only}))
"""


def _wheel(out: Path) -> Path:
    """The wheel, built from a copy of the sources (a build in the repository would leave files there)."""
    out.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, out / name)
    shutil.copytree(REPO / "src" / "cd4ml", out / "src" / "cd4ml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out / "dist"), str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (out / "dist").glob("cd4ml-*.whl")
    return wheel


def _clean_venv(root: Path, wheel: Path) -> Path:
    """A new venv holding the wheel and its runtime dependencies only; returns its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    bin_dir = root / "bin"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q",
                           "--no-compile", str(wheel)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return bin_dir


def _env(bin_dir: Path) -> dict[str, str]:
    """This process's environment, less what would let the venv see the repository's code or store."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "PYTHONHOME")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"}


def _cd4ml(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(bin_dir / "cd4ml"), *args], cwd=cwd, env=_env(bin_dir), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"cd4ml {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _serve_and_ask(bin_dir: Path, shop: Path) -> None:
    """`cd4ml serve` from the venv: a prediction, and /docs with its script from the installed packages."""
    port = free_port()
    log = shop / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(bin_dir / "cd4ml"), "serve", "-C", str(shop), "--host", "127.0.0.1",
                                 "--port", str(port)], env=_env(bin_dir), stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            resp = client.post("/predict", json={"date": "2024-09-02", "store_nbr": 1, "item_nbr": 100001,
                                                 "onpromotion": 0})
            assert resp.status_code == 200 and resp.json()["model_version"] == "1", resp.text
            docs = client.get("/docs").text
            script = next(part.split('"')[0] for part in docs.split('src="')[1:] if "swagger-ui-bundle" in part)
            assert script.startswith("/") and client.get(script).status_code == 200, script
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_wheel_alone_runs_every_command(tmp_path: Path) -> None:
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    bin_dir = _clean_venv(tmp_path / "venv", _wheel(tmp_path / "build"))
    lap("build+install")

    proc = subprocess.run([str(bin_dir / "python"), "-c", SURVEY], cwd=tmp_path, env=_env(bin_dir),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    survey = json.loads(proc.stdout.splitlines()[-1])
    assert Path(survey["file"]).is_relative_to(tmp_path / "venv"), survey["file"]
    assert survey["test_only"] == []  # no extra crept in: what passes here passes on a plain install
    assert survey["failed"] == {}
    assert {"cd4ml.cli", "cd4ml.demo.story", "cd4ml.serve.app", "cd4ml.monitor.ui"} <= set(survey["modules"])
    helps = survey["helps"]
    assert {"", "data ingest", "demo", "serve", "monitor"} <= helps.keys()
    assert {path: code for path, (code, text) in helps.items() if code != 0 or "Usage: cd4ml" not in text} == {}
    assert "Usage: cd4ml" in _cd4ml(bin_dir, tmp_path, "--help").stdout  # and through the installed script
    lap(f"imports and {len(helps)} helps")

    _cd4ml(bin_dir, tmp_path, "init", "shop", "--example", "groceries")
    shop = tmp_path / "shop"
    shrink_grocery_project(shop, feature_tests=True)
    git_init(shop)
    _cd4ml(bin_dir, shop, "data", "ingest")
    lap("init+ingest")
    result = json.loads(_cd4ml(bin_dir, shop, "run", "--json").stdout)
    assert result["version"] == "1" and result["promoted"] and result["gate"]["passed"], result
    lap("run")
    _serve_and_ask(bin_dir, shop)
    lap("serve")
    print(f"plain install, seconds: {seconds}")  # shown with -s: where the time goes
