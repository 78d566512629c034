"""The README's "Forecasting with history" example, run for real: its ```yaml block that starts with
`# example: store-sales` is a project's cd4ml.yaml next to a synthetic daily sales panel whose stores have
memory (a level that wanders and shifts, promotions, a weekly pattern)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import Service, cli, git_init
from test_readme_example import readme_block

MARKER = "# example: store-sales"
DAYS, FUTURE = 240, 2

pytestmark = pytest.mark.slow


def make_sales(days: int = DAYS + FUTURE, seed: int = 3) -> pd.DataFrame:
    """Daily sales of four stores: each store's level wanders (an AR(1) on the log scale) and shifts once, for
    good; a promotion lifts a day by 30%, and weekends sell more."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    weekly = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.35, 1.25])[dates.dayofweek]
    frames = []
    for i, base in enumerate([80.0, 120.0, 60.0, 150.0]):
        x = np.zeros(days)
        for t in range(1, days):
            x[t] = 0.9 * x[t - 1] + rng.normal(0, 0.06)
        shift = np.where(np.arange(days) >= rng.integers(30, days - 30), rng.choice([-0.25, 0.25]), 0.0)
        promo = rng.random(days) < 0.15
        sales = base * np.exp(x + shift) * weekly * np.where(promo, 1.3, 1.0) + rng.normal(0, 2, days)
        frames.append(pd.DataFrame({"date": dates, "store": f"s{i + 1}", "promo": promo,
                                    "sales": np.maximum(sales, 0).round(2)}))
    return pd.concat(frames).sort_values(["date", "store"], kind="stable").reset_index(drop=True)


def test_store_sales_example_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "cd4ml.yaml").write_text(readme_block(MARKER), encoding="utf-8")
    (tmp_path / "data").mkdir()
    table = make_sales()
    last_known = table["date"].unique()[DAYS - 1]
    table[table["date"] <= last_known].to_csv(tmp_path / "data" / "sales.csv", index=False, date_format="%Y-%m-%d")
    git_init(tmp_path)

    cli(tmp_path, "data", "ingest", check=0)
    result = json.loads(cli(tmp_path, "run", "--json", check=0).stdout)
    assert result["gate"]["passed"] and result["promoted"], result["gate"]
    rmse = result["metrics"]["rmse"]
    for kind in ("group_mean", "last_value", "seasonal_naive"):  # each beaten by at least 10%
        assert rmse < 0.9 * result["baselines"][kind]["rmse"], (kind, rmse, result["baselines"])
    assert len(result["backtest"]) == 3
    assert {c["name"] for c in result["gate"]["checks"]} >= {"beats_baseline", "backtest", "bias"}

    future = table[table["date"] > last_known].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    today, tomorrow = (json.loads(rows.drop(columns="sales").to_json(orient="records"))
                       for _, rows in future.groupby("date"))
    with Service(tmp_path) as service:
        service.wait_until("/ready", 200)
        first = service.client.post("/predict", json=today)
        assert first.status_code == 200, first.text
        refused = service.client.post("/predict", json=tomorrow)
        assert refused.status_code == 422 and "latest actual stored" in refused.text, refused.text
        future[future["date"] == today[0]["date"]].to_csv(tmp_path / "actuals.csv", index=False)  # promo with them
        fed = cli(tmp_path, "feedback", "actuals.csv", check=0)
        assert "4 into the history store" in fed.stdout, fed.stdout
        second = service.client.post("/predict", json=tomorrow)
        assert second.status_code == 200, second.text
    forecasts = np.array(first.json()["predictions"] + second.json()["predictions"])
    actual = future["sales"].to_numpy()
    assert np.all(np.abs(forecasts - actual) < 0.35 * actual), (forecasts, actual)
