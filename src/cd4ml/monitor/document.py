"""The monitoring report, typed: what `build_report` returns and every part of it.

`MonitoringReport.to_json()` is the report document (format 1): `report.json`, `cd4ml monitor
--json`, the dashboard's `/api/report`. Consumers in this process read attributes; those in
other processes (the service's /metrics, the dashboard's JS, the demo) read the document,
`cd4ml.verdicts` helping them without pandas. Days are `datetime.date`, times timezone-aware
`datetime`, both ISO 8601 strings in the document; metrics are keyed by metric name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from cd4ml.monitor.drift import WindowDrift
from cd4ml.monitor.live import Excluded, TrafficRow, Window
from cd4ml.monitor.outcomes import Outcomes

if TYPE_CHECKING:
    from cd4ml.release.delivery import DeliveryStats
    from cd4ml.release.registry import ReleaseEvent

Status = Literal["due", "ok", "not judged", "off"]
DELIVERY_DAYS = 90  # the report's delivery measures cover this many days back


def _iso(t: dt.date | None) -> str | None:
    return t.isoformat() if t else None


@dataclass(frozen=True)
class Champion:
    """The release the `champion` alias points at: `released_at`, when the alias last moved to it (None
    without a recorded move), and `age_days`, the days since then (fractional)."""

    version: str
    released_at: dt.datetime | None
    age_days: float | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "released_at": _iso(self.released_at), "age_days": self.age_days}


@dataclass(frozen=True)
class PredictionHistogram:
    """The champion's live predictions against its reference, over the profile's quantile bins:
    `edges` (len(reference) + 1, the outer ones the smallest and largest value seen), each bin's
    share of the reference (holdout) and of the live predictions."""

    version: str
    edges: list[float]
    reference: list[float]
    live: list[float]


@dataclass(frozen=True)
class AccuracyRow:
    """Live metrics of one model version's predictions dated `day` that have an actual (`rows` of them)."""

    day: dt.date
    model_version: str
    rows: int
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass(frozen=True)
class LiveScore:
    """A release's live metrics over all its scored predictions in the report's windows (`rows`)."""

    rows: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class ReleaseOutcomes:
    """A classifier release's confusion matrix and calibration curve: `live` (None without scored rows)
    and `offline` (from its profile; None for a release packaged without them)."""

    live: Outcomes | None
    offline: Outcomes | None

    def to_json(self) -> dict[str, Any]:
        return {"live": self.live.to_json() if self.live else None,
                "offline": self.offline.to_json() if self.offline else None}


@dataclass(frozen=True)
class ReleaseRow:
    """One registered version: its gate verdict (None before it was gated), registration time (ISO 8601,
    UTC), offline (holdout) metrics, live score (None without scored rows) and, for a classifier
    release that served or is the champion, its outcomes."""

    version: str
    gate: str | None
    created_at: str
    champion: bool
    offline: dict[str, float]
    live: LiveScore | None
    outcomes: ReleaseOutcomes | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "gate": self.gate, "created_at": self.created_at,
                "champion": self.champion, "offline": self.offline,
                "live": asdict(self.live) if self.live else None,
                **({"outcomes": self.outcomes.to_json()} if self.outcomes else {})}


@dataclass(frozen=True)
class DriftWindow:
    """One calendar window against the champion's reference profile; `judged`: it holds at least
    `monitoring.drift.min_rows` rows."""

    window: Window
    judged: bool
    drift: WindowDrift

    def to_json(self) -> dict[str, Any]:
        return {"start": self.window.start.isoformat(), "end": self.window.end.isoformat(), "judged": self.judged,
                **self.drift.to_json()}


@dataclass(frozen=True)
class DriftSection:
    """Drift per window, oldest first, against the profile of `reference_version` (None: no champion
    with a profile, and no windows)."""

    reference_version: str | None
    windows: list[DriftWindow]

    @property
    def judged_window(self) -> DriftWindow | None:
        """The window the drift check judged (the latest with enough rows), else the latest; None for none
        (what `cd4ml.verdicts.judged_window` picks from the document)."""
        return next((w for w in reversed(self.windows) if w.judged), self.windows[-1] if self.windows else None)

    def to_json(self) -> dict[str, Any]:
        return {"reference_version": self.reference_version, "windows": [w.to_json() for w in self.windows]}


@dataclass(frozen=True)
class Check:
    """One retraining check (drift, accuracy, coverage, age): `status` "due", "ok", "not judged" (too
    little evidence) or "off" (disabled); `due`: enabled and due; `judged`: it had the evidence (also
    when off); `detail`: one line for people; `rows`, `min_rows`: the evidence it had and needs
    (None for the age check)."""

    name: str
    enabled: bool
    status: Status
    due: bool
    judged: bool
    detail: str
    rows: int | None = None
    min_rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        return {k: v for k, v in doc.items() if v is not None or k not in ("rows", "min_rows")}


@dataclass(frozen=True)
class MonitoringReport:
    """The production report of one project (see the module docstring; `to_json()` is report.json).

    `generated_at`: when it was built (UTC); `direction`: whether the primary metric is better "max" or
    "min"; `window_days`: days per calendar window; `traffic`: per day and version, oldest first;
    `accuracy`: per day and version with actuals; `releases`: newest first; `timeline`: the champion
    alias's moves, oldest first; `feedback`: actuals received, matched, duplicate, unknown and late
    (rows); `excluded`: predictions kept out of the windows; `quarantined`: log lines compaction could
    not store, per table; `checks`: drift, accuracy, coverage, age; `delivery`: deployments, lead time,
    change failure rate and time to restore of the last `DELIVERY_DAYS` (`cd4ml releases --stats`)."""

    FORMAT: ClassVar[int] = 1

    project: str
    model_name: str
    generated_at: dt.datetime
    primary_metric: str
    direction: Literal["max", "min"]
    window_days: int
    champion: Champion | None
    traffic: list[TrafficRow]
    prediction_histogram: PredictionHistogram | None
    accuracy: list[AccuracyRow]
    releases: list[ReleaseRow]
    timeline: list[ReleaseEvent]
    feedback: dict[str, int]
    drift: DriftSection
    excluded: Excluded
    quarantined: dict[str, int]
    checks: list[Check]
    delivery: DeliveryStats | None = None  # the release process's own DORA measures, the last DELIVERY_DAYS

    @property
    def retrain_due(self) -> bool:
        """Any enabled check is due (`cd4ml monitor --check` exits 5)."""
        return any(c.due for c in self.checks)

    @property
    def not_judged(self) -> list[str]:
        """Names of the enabled checks that lacked the evidence to judge."""
        return [c.name for c in self.checks if c.enabled and not c.judged]

    def to_json(self) -> dict[str, Any]:
        """The report document (format 1), as `report.json` holds it."""
        return {
            "format": self.FORMAT, "project": self.project, "model_name": self.model_name,
            "generated_at": _iso(self.generated_at), "primary_metric": self.primary_metric,
            "direction": self.direction, "window_days": self.window_days,
            "champion": self.champion.to_json() if self.champion else None,
            "traffic": [t.to_json() for t in self.traffic],
            "prediction_histogram": asdict(self.prediction_histogram) if self.prediction_histogram else None,
            "accuracy": [a.to_json() for a in self.accuracy], "releases": [r.to_json() for r in self.releases],
            "timeline": [{"time": _iso(e.time), "kind": e.kind, "from": e.from_version, "to": e.to_version,
                          "by": e.who, "why": e.why} for e in self.timeline],
            "feedback": self.feedback, "drift": self.drift.to_json(), "excluded": asdict(self.excluded),
            "quarantined": self.quarantined, "checks": [c.to_json() for c in self.checks],
            "retrain_due": self.retrain_due, "not_judged": self.not_judged,
            "delivery": self.delivery.to_json() if self.delivery else None,
        }
