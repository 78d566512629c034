"""Rows for `cd4ml releases`: each version with its metrics, verdict and lineage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cd4ml.release.registry import TAG, Registry


def list_releases(registry: Registry, primary: str) -> list[dict[str, Any]]:
    """One dict per registered version, newest first."""
    champion = registry.champion()
    rows = []
    for mv in reversed(registry.versions()):
        tags = mv.tags
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics = {k: v for k, v in registry.client.get_run(mv.run_id).data.metrics.items()
                       if "." not in k}
        rows.append({
            "version": str(mv.version),
            "champion": champion is not None and str(champion.version) == str(mv.version),
            "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.timezone.utc).isoformat(),
            "metrics": metrics,
            "gate": tags.get(f"{TAG}gate"),
            "gate_failed": tags.get(f"{TAG}gate_failed") or None,
            "data_version": tags.get(f"{TAG}data_version"),
            "git_commit": tags.get(f"{TAG}git_commit"),
            "run_id": mv.run_id,
        })
    return rows
