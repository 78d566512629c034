"""`cd4ml --help` and `cd4ml run --help` stay light: no heavy library is imported to print help.

cd4ml.cli imports MLflow, pandas, LightGBM and friends inside the commands that need them; a
module-level import anywhere on the CLI's import path would make every help and usage error
pay seconds of start-up. Each case runs in a fresh interpreter, so nothing this test process
already imported can hide or fake an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("mlflow", "pandas", "lightgbm", "sklearn", "deltalake", "pandera", "matplotlib", "fastapi", "uvicorn")

# Imports the CLI the way `python -m cd4ml.cli` does, runs the Typer app with the given arguments
# (help exits through SystemExit), then reports every module the process holds.
CHILD = """
import json, sys
from cd4ml.cli import app
try:
    app(args=json.loads(sys.argv[1]), prog_name="cd4ml")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.write("\\n@@MODULES@@" + json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(args: list[str]) -> tuple[object, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, f"child failed (exit {proc.returncode}):\n{proc.stderr}"
    help_text, _, doc = proc.stdout.rpartition("\n@@MODULES@@")
    report = json.loads(doc)
    return report["exit"], report["modules"], help_text


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]], ids=["cd4ml --help", "cd4ml run --help"])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    code, modules, help_text = _modules_after(args)
    assert code in (0, None), f"--help exited {code}"
    assert "Usage" in help_text  # help was really printed, not an early error
    assert "cd4ml.cli" in modules  # the module list is the child's own
    top_level = {name.split(".")[0] for name in modules}
    heavy = sorted(top_level.intersection(HEAVY))
    assert not heavy, (f"`cd4ml {' '.join(args)}` imports {heavy}: import them inside the command that "
                       "needs them (see cd4ml/cli.py's module docstring)")
