"""`cd4ml demo --example churn`: the same six scenarios on the subscription business, each claim checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_demo_served_and_logged, play_demo

pytestmark = pytest.mark.slow


def test_churn_demo_plays_every_scenario_and_passes(tmp_path: Path) -> None:
    out, html = play_demo(tmp_path, "--example", "churn")
    # A classifier answers a label with each class's probability (the long line may wrap anywhere between words).
    flat = re.sub(r"\s+", " ", out)
    assert re.search(r'POST /predict \{.*?\} -> (true|false) \(probabilities \{"false": [\d.]+, "true": [\d.]+\}\) '
                     r'\(version 1\)', flat)
    assert "feature tests failed (test_hours_per_fee_is_usage_over_price)" in out
    aucs = [float(a) for a in re.findall(r"version [123]: auc ([\d.]+) .*now champion", out)]
    assert len(aucs) == 3 and aucs[0] < aucs[1] < aucs[2], aucs  # each release goes live with a better AUC
    assert re.search(r"version 4: auc [\d.]+ .*gate rejected \(vs_champion\)", out)
    assert "the service still serves version 3" in out
    assert "reproduces version 3's metrics exactly" in out
    assert re.search(r"rollback to version 2: .* 0 failed", out)
    # Scenario 6: a quiet month, the price rise flagged, retraining that beats the stale champion, a quiet end.
    months = dict(re.findall(r"^month (\d): live auc .*?monitor --check:\s*(\w+)", out, re.M))
    assert months == {"1": "ok", "2": "retrain", "3": months["3"], "4": "ok"}, months
    assert re.search(r"^month 2: .*drift: .*\bprice", out, re.M)
    gates = re.findall(r"gate on the latest month: challenger ([\d.]+) vs champion ([\d.]+)", out)
    assert gates and float(gates[-1][0]) > float(gates[-1][1])
    before, after = map(float, re.search(r"live logloss: ([\d.]+) the month prices rose -> ([\d.]+)", out).groups())
    assert after < before
    assert_demo_served_and_logged(out, 100)
    assert "on the churn example" in html and "<th>auc</th>" in html and "<th>live logloss</th>" in html
    assert html.count("data:image/png;base64,") == 2
    assert (tmp_path / "scratch" / "subscriptions" / ".git").is_dir()


def test_an_unknown_example_is_a_usage_error_naming_the_choices() -> None:
    proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", "demo", "--example", "flights"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2
    assert "groceries" in proc.stderr and "churn" in proc.stderr
