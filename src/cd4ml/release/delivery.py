"""How well the delivery process itself does: the four DORA measures, from the release history and git.

- deployment frequency: versions made champion (auto-promote, promote, force-promote) per week;
- lead time for changes: a deployed version's commit time -> the moment it became champion;
- change failure rate: the share of deployments later rolled back (by hand or automatically);
- time to restore: a rolled-back deployment's time as champion (it became champion -> the rollback).
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cd4ml.errors import ConfigError
from cd4ml.release.registry import TAG, ReleaseEvent, Registry

DEPLOYMENTS = ("auto-promote", "promote", "force-promote")
_PERIOD = re.compile(r"(\d+)([dwh])")
MAX_SINCE_HOURS = 100 * 366 * 24


@dataclass(frozen=True)
class DeliveryStats:
    """The four measures over `since` .. `until` (hours and days as floats; None: nothing to measure)."""

    since: str
    until: str
    deployments: int
    per_week: float
    lead_time_hours_median: float | None
    lead_times_measured: int  # deployments whose commit is in the repository
    rolled_back: int
    change_failure_rate: float | None
    restore_hours_median: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """The four measures in one line of text."""
        rate = "-" if self.change_failure_rate is None else f"{self.change_failure_rate:.0%}"
        return (f"{self.deployments} deployment(s), {self.per_week:.2f} a week; lead time {format_hours(self.lead_time_hours_median)} "
                f"(median); change failure rate {rate}; time to restore {format_hours(self.restore_hours_median)} (median)")


def format_hours(h: float | None) -> str:
    """Hours as a person reads them: seconds, minutes, hours or days; "-" for nothing measured."""
    if h is None:
        return "-"
    return (f"{h * 3600:.0f} s" if h < 1 / 60 else f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h" if h < 48
            else f"{h / 24:.1f} days")


_COMMIT = re.compile(r"[0-9a-f]{4,64}")


def parse_since(text: str) -> dt.timedelta:
    """`90d`, `12w`, `48h` -> a duration; ConfigError naming `--since` otherwise."""
    match = _PERIOD.fullmatch(text.strip())
    hours = int(match.group(1)) * {"d": 24, "w": 168, "h": 1}[match.group(2)] if match else 0
    if not 0 < hours <= MAX_SINCE_HOURS:
        raise ConfigError(f"{text!r} is not a period: a number and d, w or h, e.g. 90d, at most 100 years",
                          key="--since")
    return dt.timedelta(hours=hours)


def delivery_stats(registry: Registry, root: Path, window: dt.timedelta | None = None,
                   now: dt.datetime | None = None) -> DeliveryStats:
    """The measures over the last `window` (default: since the first release event) up to `now`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    events = registry.history()
    start = now - window if window else (events[0].time if events else now)
    deployed = [e for e in events if e.kind in DEPLOYMENTS and e.time >= start]
    failed = [(d, r) for d in deployed if (r := _rolled_back(d, events)) is not None]
    leads = _lead_hours(registry, root, deployed)
    weeks = max((now - start).total_seconds() / (7 * 86400), 1 / 7)  # at least a day, so one event is no spike
    return DeliveryStats(
        since=start.isoformat(timespec="seconds"), until=now.isoformat(timespec="seconds"),
        deployments=len(deployed), per_week=round(len(deployed) / weeks, 3),
        lead_time_hours_median=round(statistics.median(leads), 3) if leads else None, lead_times_measured=len(leads),
        rolled_back=len(failed), change_failure_rate=round(len(failed) / len(deployed), 3) if deployed else None,
        restore_hours_median=(round(statistics.median((r.time - d.time).total_seconds() / 3600 for d, r in failed), 3)
                              if failed else None))


def _rolled_back(deployment: ReleaseEvent, events: list[ReleaseEvent]) -> ReleaseEvent | None:
    """The rollback that ended this deployment's time as champion, if that is how it ended."""
    ended = next((e for e in events if e.time > deployment.time and e.from_version == deployment.to_version), None)
    return ended if ended is not None and ended.kind == "rollback" else None


def _lead_hours(registry: Registry, root: Path, deployed: list[ReleaseEvent]) -> list[float]:
    """Hours from each deployed version's commit to its becoming champion, for the deployments whose commit is
    in the repository here: the versions' commits from one listing, their times from one git call."""
    wanted = {e.to_version for e in deployed}
    commits = {str(mv.version): mv.tags.get(f"{TAG}git_commit") for mv in registry.versions()
               if str(mv.version) in wanted}
    # Only commit ids go on git's command line: a tag edited to "--output=..." would be an option.
    known = sorted({c for c in commits.values() if c and _COMMIT.fullmatch(c)})
    if not known:
        return []
    try:  # --ignore-missing: a commit no longer in the repository (rewritten history) is left out, not an error
        proc = subprocess.run(["git", "log", "--no-walk=unsorted", "--ignore-missing", "--format=%H %ct", *known],
                              cwd=root, capture_output=True, text=True)
    except OSError:  # no git on this machine (a server that only monitors): lead times are not measured
        return []
    times = dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2) if not proc.returncode else {}
    out = []
    for event in deployed:
        commit = commits.get(event.to_version) or ""
        committed = next((int(t) for sha, t in times.items() if commit and sha.startswith(commit) and t.isdigit()), None)
        if committed is not None:
            out.append((event.time - dt.datetime.fromtimestamp(committed, tz=dt.timezone.utc)).total_seconds() / 3600)
    return out