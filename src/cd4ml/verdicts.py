"""Reading the verdicts of a report document (report.json), without the libraries that build one.

The service's /metrics and the demo read the document (`MonitoringReport.to_json()`); like the
terminal and the HTML page (`DriftSection.judged_window`) and the dashboard, they show the drift
window the drift check judged, not a later one holding a stray record.
"""

from __future__ import annotations

from typing import Any

NOT_JUDGED = "not judged"  # a check's status when its window holds too little evidence


def judged_window(report: dict[str, Any]) -> dict[str, Any] | None:
    """The drift window the drift check judged (the latest with enough rows), else the latest; None for none.

    Windows of reports written before `judged` existed count as judged."""
    windows = (report.get("drift") or {}).get("windows") or []
    return next((w for w in reversed(windows) if w.get("judged", True)), windows[-1] if windows else None)
