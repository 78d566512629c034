"""Rows for `cd4ml releases` (and the monitoring report): each version with its metrics, verdict and lineage."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from cd4ml.release.registry import TAG, Registry


@dataclass(frozen=True)
class ListedRelease:
    """One registered version. `created`: ISO 8601 in UTC; `metrics`: its run's holdout metrics (no
    baseline or oracle ones); `gate`: the verdict tag ("passed", "rejected", "pending", "abandoned") or
    None; `data_version`, `git_commit`, `run_id`: its lineage as tagged (None if untagged)."""

    version: str
    champion: bool
    created: str
    metrics: dict[str, float]
    gate: str | None
    gate_failed: str | None
    data_version: str | None
    git_commit: str | None
    run_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The row of `cd4ml releases --json`."""
        return asdict(self)


def list_releases(registry: Registry) -> list[ListedRelease]:
    """Every registered version, newest first."""
    champion = registry.champion()
    rows = []
    for mv in reversed(registry.versions()):
        tags = mv.tags
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics = {k: v for k, v in registry.client.get_run(mv.run_id).data.metrics.items()
                       if "." not in k}
        rows.append(ListedRelease(
            version=str(mv.version),
            champion=champion is not None and str(champion.version) == str(mv.version),
            created=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.timezone.utc).isoformat(),
            metrics=metrics,
            gate=tags.get(f"{TAG}gate"),
            gate_failed=tags.get(f"{TAG}gate_failed") or None,
            data_version=tags.get(f"{TAG}data_version"),
            git_commit=tags.get(f"{TAG}git_commit"),
            run_id=mv.run_id,
        ))
    return rows
