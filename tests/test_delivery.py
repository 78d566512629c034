"""`cd4ml releases --stats` (issue 20): the four DORA measures of the release history, from its events and git."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
from pathlib import Path

import pytest

from cd4ml.config import load_project
from cd4ml.release.delivery import delivery_stats
from cd4ml.release.registry import Registry
from helpers import cli


def _committed(root: Path, sha: str) -> dt.datetime:
    out = subprocess.run(["git", "show", "-s", "--format=%ct", sha], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    return dt.datetime.fromtimestamp(int(out), tz=dt.timezone.utc)


def test_deployments_lead_time_failures_and_restores_come_from_the_history(two_versions_shop: Path) -> None:
    root = two_versions_shop
    cli(root, "promote", "2", check=0)
    cli(root, "rollback", "--reason", "orders too low", check=0)
    registry = Registry.for_project(load_project(root))
    events = registry.history()
    assert [e.kind for e in events] == ["auto-promote", "promote", "rollback"]
    now = events[-1].time + dt.timedelta(days=6)
    stats = delivery_stats(registry, root, now=now)

    assert stats.deployments == 2 and stats.rolled_back == 1 and stats.change_failure_rate == 0.5
    weeks = (now - events[0].time).total_seconds() / (7 * 86400)
    assert stats.per_week == pytest.approx(2 / weeks, abs=1e-3)
    leads = [(e.time - _committed(root, registry.version(e.to_version).tags["cd4ml.git_commit"])).total_seconds() / 3600
             for e in events[:2]]
    assert stats.lead_time_hours_median == pytest.approx(statistics.median(leads), abs=1e-3)
    restore = (events[2].time - events[1].time).total_seconds() / 3600
    assert stats.restore_hours_median == pytest.approx(restore, abs=1e-3)
    # A window that starts after the first deployment counts only the second, which failed.
    recent = delivery_stats(registry, root, now - events[1].time + dt.timedelta(seconds=1), now=now)
    assert recent.deployments == 1 and recent.change_failure_rate == 1.0

    out = json.loads(cli(root, "releases", "--stats", "--since", "90d", "--json", check=0).stdout)
    assert out["deployments"] == 2 and out["change_failure_rate"] == 0.5
    text = cli(root, "releases", "--stats", check=0).stdout
    assert "change failure rate" in text and "50%" in text
    for since in ("soon", "0d", "99999999999d"):
        assert "--since" in cli(root, "releases", "--stats", "--since", since, check=2).stderr


def test_the_monitoring_report_its_page_and_metrics_carry_the_delivery_measures(two_versions_shop: Path) -> None:
    from cd4ml.serve.metrics import ReportCollector

    root = two_versions_shop
    cli(root, "promote", "2", check=0)
    cli(root, "rollback", "--reason", "orders too low", check=0)
    delivery = json.loads(cli(root, "monitor", "--json", check=0).stdout)["delivery"]
    assert (delivery["deployments"], delivery["rolled_back"], delivery["change_failure_rate"]) == (2, 1, 0.5)
    said = " ".join(cli(root, "monitor", check=0).stdout.split())
    assert "Delivery, the last 90 days: 2 deployment(s)" in said and "change failure rate 50%" in said, said
    gauges = {f.name: f.samples[0].value for f in ReportCollector(load_project(root).monitor_dir / "report.json").collect()
              if f.name.startswith("cd4ml_delivery")}
    assert gauges["cd4ml_delivery_change_failure_rate"] == 0.5
    assert gauges["cd4ml_delivery_deployments_per_week"] == delivery["per_week"]
    assert gauges["cd4ml_delivery_restore_hours"] == delivery["restore_hours_median"]


def test_a_tampered_commit_tag_is_never_an_option_to_git(two_versions_shop: Path, tmp_path: Path) -> None:
    root = two_versions_shop
    cli(root, "promote", "2", check=0)
    registry = Registry.for_project(load_project(root))
    pwned = tmp_path / "pwned"
    registry.client.set_model_version_tag(registry.name, "2", "cd4ml.git_commit", f"--output={pwned}")
    stats = delivery_stats(registry, root)
    assert stats.deployments == 2 and stats.lead_times_measured == 1  # version 1's commit only
    assert not pwned.exists()
