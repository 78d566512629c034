"""`cd4ml data ingest`: read the source, validate it, store it as a new table version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from cd4ml.config import Project
from cd4ml.data.sources import read_source
from cd4ml.data.table import TrainingTable
from cd4ml.data.validation import Failure, ValidationReport, validate
from cd4ml.errors import DataRejected


@dataclass(frozen=True)
class IngestResult:
    version: int
    rows: int
    source: str
    report: ValidationReport


def ingest(project: Project, *, path: str | None = None,
           mode: Literal["overwrite", "append"] = "overwrite") -> IngestResult:
    """Validate the source and write it as a new version of the training table.

    Raises DataRejected (exit code 4) with the full report if any check fails;
    the table is then left exactly as it was.
    """
    frame, source = read_source(project, path)
    return store_frame(project, frame, source=source, mode=mode)


def store_frame(project: Project, frame: pd.DataFrame, *, source: str, mode: Literal["overwrite", "append"],
                origin: str = "ingest") -> IngestResult:
    """Validate rows already read and write them as a new table version (the rules of `ingest`).

    `origin` says how the rows came to be (`ingest`, or `production` for `cd4ml data refresh`).
    """
    table = TrainingTable.for_project(project)
    existing = table.row_count() if mode == "append" and table.exists() else 0
    clean, report = validate(frame, project.config, existing_rows=existing)
    if not report.ok:
        raise DataRejected(f"{source}: {len(report.failures)} validation rule(s) broken; "
                           "nothing was written", report)
    if mode == "append" and table.exists():
        mismatch = table.append_mismatch(clean)
        if mismatch:
            report.failures += [Failure(f"column {why}", column, len(clean)) for column, why in mismatch.items()]
            listed = "; ".join(f"{column!r} {why}" for column, why in mismatch.items())
            raise DataRejected(f"{source}: the columns differ from the table's ({listed}); --append adds rows to "
                               "the table as it is: ingest without --append to store a version with the current "
                               "schema; nothing was written", report)
    version = table.write(clean, mode=mode, source=source, origin=origin)
    return IngestResult(version, len(clean), source, report)
