"""The README's "Your own data" example, run for real.

The ```yaml block of README.md that starts with `# example: bike-rentals` is
written as a project's cd4ml.yaml next to a synthetic hourly bike-rental table,
and the real `cd4ml` CLI is run on it: ingest, run, releases.
If the README's example stops working, this test fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from helpers import cli

if TYPE_CHECKING:
    from cd4ml.cli import CommandResult

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = "# example: bike-rentals"
STATIONS = {"central": 1.8, "university": 1.5, "harbour": 1.2, "park": 1.0, "museum": 0.8, "airport": 0.6}
# Smaller and single-threaded: seconds on a busy CI machine, and still well above the README's thresholds.
FAST = ["--set", "model.params.n_estimators=120", "--set", "model.params.n_jobs=1"]

pytestmark = pytest.mark.slow


def readme_block(marker: str) -> str:
    """The README's ```yaml block that starts with `marker` (there must be exactly one)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    found = [b for b in blocks if b.startswith(marker)]
    assert len(found) == 1, f"expected one ```yaml block starting with {marker!r} in README.md, found {len(found)}"
    return found[0]


def readme_example() -> str:
    """The README's bike-rentals cd4ml.yaml."""
    return readme_block(MARKER)


def make_rentals(days: int = 60, start: str = "2024-04-01") -> pd.DataFrame:
    """Hourly rentals at six stations, Poisson around a demand the features can explain.

    Demand = station size x hour-of-day profile (commute peaks on weekdays, an
    afternoon hump at weekends) x weather x temperature; a few humidity values are missing.
    """
    rng = np.random.default_rng(0)
    hours = pd.date_range(start, periods=days * 24, freq="h")
    n = len(hours)
    hod = hours.hour.to_numpy()
    weekend = hours.day_of_week.to_numpy() >= 5
    day = (hours.normalize() - hours[0].normalize()).days.to_numpy()
    weather = rng.choice(["clear", "cloudy", "rain", "snow"], size=n, p=[0.5, 0.3, 0.17, 0.03])
    temp = 8 + 0.12 * day + 6 * np.sin((hod - 9) / 24 * 2 * np.pi) + rng.normal(0, 2, n)
    temp = np.where(weather == "snow", np.minimum(temp, 1.0), temp)
    humidity = np.clip(55 + 20 * (weather == "rain") + 10 * (weather == "snow") - 0.8 * (temp - 12)
                       + rng.normal(0, 8, n), 5, 100)
    commute = np.exp(-((hod - 8) ** 2) / 3) + np.exp(-((hod - 17.5) ** 2) / 4)
    leisure = np.exp(-((hod - 14) ** 2) / 10)
    profile = np.where(weekend, 0.2 + 1.6 * leisure, 0.15 + 1.8 * commute + 0.5 * leisure) * np.where(hod < 6, 0.3, 1)
    weather_factor = pd.Series(weather).map({"clear": 1.0, "cloudy": 0.85, "rain": 0.45, "snow": 0.2}).to_numpy()
    temp_factor = np.exp(0.04 * (temp - 15) - 0.002 * (temp - 15) ** 2)
    frames = [
        pd.DataFrame({"timestamp": hours, "station": name, "weather": weather, "temperature": np.round(temp, 1),
                      "humidity": np.round(humidity), "rentals": rng.poisson(20 * size * profile * weather_factor
                                                                             * temp_factor)})
        for name, size in STATIONS.items()
    ]
    df = pd.concat(frames, ignore_index=True)
    df.loc[rng.choice(len(df), size=40, replace=False), "humidity"] = np.nan
    return df.sort_values(["timestamp", "station"]).reset_index(drop=True)


def cd4ml(root: Path, *args: str, expect: int, process: bool = False) -> CommandResult:
    """Run the real CLI in `root` on the embedded MLflow store (helpers.cli)."""
    return cli(root, *args, check=expect, env={"CD4ML_USER": "readme-test"}, process=process)


def test_cli_runs_as_a_module() -> None:
    source = (REPO / "src" / "cd4ml" / "cli.py").read_text(encoding="utf-8")
    assert re.search(r'^if __name__ == "__main__":\n    main\(\)\s*$', source, flags=re.M), \
        "cli.py must end with `if __name__ == \"__main__\": main()` for `python -m cd4ml.cli`"
    out = cd4ml(REPO, "--help", expect=0, process=True).stdout
    for command in ("init", "data", "run", "releases", "promote", "rollback"):
        assert command in out


def test_readme_example_is_a_valid_project(tmp_path: Path) -> None:
    from cd4ml.config import load_project

    (tmp_path / "cd4ml.yaml").write_text(readme_example(), encoding="utf-8")
    cfg = load_project(tmp_path).config
    assert cfg.source.path == "data/rentals.csv"
    assert set(cfg.schema_.columns) == {"timestamp", "station", "weather", "temperature", "humidity", "rentals"}
    assert cfg.schema_.columns["humidity"].nullable
    assert (cfg.target, cfg.time_column) == ("rentals", "timestamp")
    assert {"hour", "dayofweek", "month"} <= set(cfg.features.calendar)
    assert cfg.features.target_encodings == [["station", "hour"]]
    assert set(cfg.features.categorical) == {"station", "weather"}
    assert {"temperature", "humidity"} <= set(cfg.features.numeric)
    assert cfg.split.holdout_days is not None
    assert (cfg.model.algorithm, cfg.model.target_transform) == ("lightgbm", "log1p")
    assert cfg.metrics.primary == "rmse" and cfg.metrics.report == ["rmse", "mae", "r2"]
    assert cfg.baseline.group_by == ["station", "hour", "dayofweek"]
    assert cfg.slices == ["station"]
    # Requests carry the raw columns only: no target.
    assert cfg.input_columns == ["timestamp", "station", "weather", "temperature", "humidity"]


def test_bike_rentals_example_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "cd4ml.yaml").write_text(readme_example(), encoding="utf-8")
    (tmp_path / "data").mkdir()
    rentals = make_rentals()
    rentals.to_csv(tmp_path / "data" / "rentals.csv", index=False)
    assert 8000 <= len(rentals) <= 9000 and 0 < rentals["humidity"].isna().sum() < 100

    out = cd4ml(tmp_path, "data", "ingest", expect=0).stdout
    assert f"Accepted {len(rentals):,} rows" in out and "table version 0" in " ".join(out.split())
    versions = json.loads(cd4ml(tmp_path, "data", "versions", "--json", expect=0).stdout)
    assert [(v["version"], v["rows"]) for v in versions] == [(0, len(rentals))]
    assert versions[0]["time_min"].startswith("2024-04-01") and versions[0]["time_max"].startswith("2024-05-30 23")

    result = json.loads(cd4ml(tmp_path, "run", "--json", *FAST, expect=0).stdout)
    assert str(result["version"]) == "1" and result["data_version"] == 0 and result["oracle"] is None
    metrics, baseline = result["metrics"], result["baseline"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    # The model learned the demand: clearly better than "same station, hour and weekday" on average.
    assert metrics["rmse"] < 0.8 * baseline["rmse"], (metrics, baseline)
    assert metrics["mae"] < baseline["mae"] and metrics["r2"] > baseline["r2"]
    assert metrics["r2"] > 0.8
    gate = result["gate"]
    assert gate["passed"] and result["promoted"]
    checks = {c["name"]: c for c in gate["checks"]}
    assert set(checks) == {"threshold:r2", "threshold:rmse", "beats_baseline", "vs_champion", "slice:station",
                           "latency_p99_ms", "parity"}
    assert all(c["passed"] for c in checks.values())
    assert checks["vs_champion"]["reason"] == "no champion yet"
    assert checks["parity"]["value"] == 0.0

    releases = json.loads(cd4ml(tmp_path, "releases", "--json", expect=0).stdout)
    assert len(releases) == 1
    (release,) = releases
    assert str(release["version"]) == "1" and release["champion"] is True and release["gate"] == "passed"
    assert str(release["data_version"]) == "0" and release["run_id"] == result["run_id"]
    assert release["metrics"]["rmse"] == pytest.approx(metrics["rmse"])

    # A deliberately weak model is registered as version 2 but rejected (exit 3); champion stays 1.
    weak = cd4ml(tmp_path, "run", "--json", "--set", "model.params.n_estimators=2", "--set",
                 "model.params.n_jobs=1", expect=3)
    weak_result = json.loads(weak.stdout)
    assert str(weak_result["version"]) == "2" and not weak_result["gate"]["passed"] and not weak_result["promoted"]
    failed = {c["name"] for c in weak_result["gate"]["checks"] if not c["passed"]}
    assert {"beats_baseline", "vs_champion"} <= failed
    assert "rejected by the acceptance gate" in weak.stderr
    releases = json.loads(cd4ml(tmp_path, "releases", "--json", expect=0).stdout)
    assert [(str(r["version"]), r["champion"], r["gate"]) for r in releases] == [
        ("2", False, "rejected"), ("1", True, "passed")]

    history = json.loads(cd4ml(tmp_path, "releases", "--history", "--json", expect=0).stdout)
    assert [(e["kind"], e["from_version"], str(e["to_version"]), e["who"]) for e in history] == [
        ("auto-promote", None, "1", "readme-test")]

    # The overrides are recorded with the run (the README says so).
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / '.cd4ml' / 'mlflow.db'}"
    run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(result["run_id"])
    assert json.loads(run.data.tags["cd4ml.overrides"]) == {"model.params.n_estimators": 120,
                                                            "model.params.n_jobs": 1}
    assert run.data.params["model.params.n_estimators"] == "120"
    assert (tmp_path / ".cd4ml" / "mlartifacts").is_dir()
