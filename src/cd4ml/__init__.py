"""cd4ml: Continuous Delivery for Machine Learning.

Code, data and model move through one pipeline: versioned data -> features ->
train -> evaluate -> acceptance gate -> registry release -> serve -> monitor.

The Python API (the README's "Python API" section)::

    import cd4ml
    project = cd4ml.load_project("shop")          # cd4ml.yaml, validated; overrides={"a.b": v}
    cd4ml.ingest(project)                          # a new, validated table version
    result = cd4ml.run(project)                    # train, gate, register, promote
    predictions = cd4ml.score(project, frame)      # the champion's predictions for a DataFrame
    report = cd4ml.build_report(project)           # a MonitoringReport: drift, live accuracy, checks
    report.retrain_due, report.to_json()           # attributes; the report.json document

Names are imported on first use, so `import cd4ml` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_project": "cd4ml.config", "Project": "cd4ml.config",
    "ingest": "cd4ml.data.ingest",
    "run": "cd4ml.api", "load_release": "cd4ml.api", "score": "cd4ml.api",
    "RunResult": "cd4ml.pipeline.run",
    "Registry": "cd4ml.release.registry", "Release": "cd4ml.release.package",
    "build_report": "cd4ml.monitor.report", "MonitoringReport": "cd4ml.monitor.document",
    "refresh": "cd4ml.refresh",
    "Cd4mlError": "cd4ml.errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from cd4ml.api import load_release, run, score
    from cd4ml.config import Project, load_project
    from cd4ml.data.ingest import ingest
    from cd4ml.errors import Cd4mlError
    from cd4ml.monitor.document import MonitoringReport
    from cd4ml.monitor.report import build_report
    from cd4ml.refresh import refresh
    from cd4ml.release.package import Release
    from cd4ml.release.registry import Registry
    from cd4ml.pipeline.run import RunResult


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cd4ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
