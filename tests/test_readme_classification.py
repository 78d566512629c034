"""The README's "Classification" example, run for real: its ```yaml block that starts with
`# example: bike-busy` is a project's cd4ml.yaml next to a synthetic table of busy station-hours
(the bike-rental table of tests/test_readme_example.py, `busy` = more than 30 rentals)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import Service, cli, git_init
from test_readme_example import make_rentals, readme_block

MARKER = "# example: bike-busy"
FAST = ["--set", "model.params.n_estimators=120"]

pytestmark = pytest.mark.slow


def test_bike_busy_example_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "cd4ml.yaml").write_text(readme_block(MARKER), encoding="utf-8")
    (tmp_path / "data").mkdir()
    table = make_rentals()
    table["busy"] = table.pop("rentals") > 30
    table.to_csv(tmp_path / "data" / "busy.csv", index=False)
    git_init(tmp_path)

    cli(tmp_path, "data", "ingest", check=0)
    bad = table.head(1500).copy()
    bad["busy"] = bad["busy"].map({True: "true", False: "false"})
    bad.loc[1234, "busy"] = "maybe"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    refused = cli(tmp_path, "data", "ingest", "--path", "bad.csv", check=4)
    assert "row 1235, column 'busy': \"maybe\"" in refused.stdout + refused.stderr

    result = json.loads(cli(tmp_path, "run", "--json", *FAST, check=0).stdout)
    metrics, baseline = result["metrics"], result["baseline"]
    assert list(metrics) == ["auc", "logloss", "brier", "ece", "accuracy", "f1"]
    assert metrics["auc"] > 0.85 and metrics["auc"] > baseline["auc"] + 0.02, (metrics, baseline)
    assert metrics["logloss"] < baseline["logloss"]
    checks = {c["name"]: c for c in result["gate"]["checks"]}
    assert set(checks) == {"threshold:auc", "threshold:ece", "beats_baseline", "vs_champion", "vs_champion:logloss",
                           "slice:station", "latency_p99_ms", "parity"}
    assert result["gate"]["passed"] and result["promoted"] and checks["parity"]["value"] == 0.0

    hours = table[table["timestamp"] == table["timestamp"].max()].drop(columns="busy")
    records = json.loads(hours.to_json(orient="records", date_format="iso"))
    with Service(tmp_path) as service:
        service.wait_until("/ready", 200)
        one = service.client.post("/predict", json=records[0]).json()
        many = service.client.post("/predict", json=records).json()
    assert isinstance(one["prediction"], bool) and set(one["probabilities"]) == {"false", "true"}
    assert sum(one["probabilities"].values()) == pytest.approx(1.0)
    assert many["probabilities"][0] == one["probabilities"] and many["predictions"][0] == one["prediction"]
    p_true = np.array([p["true"] for p in many["probabilities"]])
    assert np.all((p_true >= 0) & (p_true <= 1)) and len(p_true) == len(records)
