"""The main job: `cd4ml demo` plays the whole story and passes (as `make demo` runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_plays_every_scenario_and_passes(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", "demo", "--dir", str(tmp_path / "scratch"),
                           "--report", str(report)], capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for chapter in ("1. Plumbing", "2. Data science", "3. ML engineering", "4. Continuous deployment",
                    "5. Undo", "6. In the wild"):
        assert chapter in out
    assert "stopped before training" in out or "feature tests failed" in out
    assert re.search(r"version 4: nwrmsle [\d.]+ .*gate rejected", out)
    assert "reproduces version 3's metrics exactly" in out
    # Scenario 6: quiet week 1, the new store flagged in week 2, recovered after retraining on feedback data.
    weeks = dict(re.findall(r"^week (\d): live nwrmsle .*?monitor --check:\s*(\w+)", out, re.S | re.M))
    assert weeks == {"1": "ok", "2": "retrain", "3": weeks["3"], "4": "ok"}, weeks
    assert re.search(r"week 2: .*drift: store_nbr", out, re.S)
    before, after = map(float, re.search(r"live nwrmsle: ([\d.]+) the week store 11 opened -> ([\d.]+)", out).groups())
    assert after < before
    served, failed = map(int, re.search(r"requests served: (\d+) .*failed: (\d+)", out).groups())
    assert served > 1000 and failed == 0
    logged = int(re.search(r"predictions logged: (\d+)", out).group(1))
    assert logged == int(re.search(r"\((\d+) predictions\)", out).group(1))
    html = report.read_text()
    assert "data:image/png;base64," in html and "http" not in html.split("<body>")[1].split("Generated")[0]
    assert (tmp_path / "scratch" / "shop" / ".git").is_dir()  # --dir is kept
