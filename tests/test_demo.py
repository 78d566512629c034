"""The main job: `cd4ml demo` plays the whole story and passes (as `make demo` runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import assert_demo_served_and_logged, play_demo

pytestmark = pytest.mark.slow


def test_demo_plays_every_scenario_and_passes(tmp_path: Path) -> None:
    out, html = play_demo(tmp_path)
    assert "stopped before training" in out or "feature tests failed" in out
    assert re.search(r"version 4: nwrmsle [\d.]+ .*gate rejected", out)
    assert "reproduces version 3's metrics exactly" in out
    # Scenario 6: quiet week 1, the new store flagged in week 2, recovered after retraining on feedback data.
    weeks = dict(re.findall(r"^week (\d): live nwrmsle .*?monitor --check:\s*(\w+)", out, re.S | re.M))
    assert weeks == {"1": "ok", "2": "retrain", "3": weeks["3"], "4": "ok"}, weeks
    assert re.search(r"week 2: .*drift: store_nbr", out, re.S)
    before, after = map(float, re.search(r"live nwrmsle: ([\d.]+) the week store 11 opened -> ([\d.]+)", out).groups())
    assert after < before
    assert_demo_served_and_logged(out, 1000)
    assert "data:image/png;base64," in html and "http" not in html.split("<body>")[1].split("Generated")[0]
    assert (tmp_path / "scratch" / "shop" / ".git").is_dir()  # --dir is kept
