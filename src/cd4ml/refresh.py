"""`cd4ml data refresh`: production rows with their actuals become training rows.

Closing the loop: every stored prediction that has an actual becomes one row of the
training table, appended as a new Delta version with origin `production`. A row is
the request's inputs, the actual's labels and attributes, and lookup attributes from
the champion's own tables where the actual did not carry them. Rows are deduplicated
by the schema keys (the latest prediction of a key wins), keys already in the table are
left out (so a refresh is idempotent), rows still lacking a required column (e.g. an actual
that carried the target but not the oracle column) are left out and counted, and the rest
are validated like any ingest: a rejected batch leaves the table unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cd4ml.config import Project
from cd4ml.data.ingest import IngestResult, store_frame
from cd4ml.data.table import TrainingTable
from cd4ml.errors import ConfigError


@dataclass(frozen=True)
class RefreshResult:
    candidates: int  # stored predictions with an actual
    new_rows: int  # rows appended (0: nothing new, no version written)
    already_in_table: int
    incomplete: int  # left out: their actuals lack a column the table requires
    missing_columns: list[str]
    ingest: IngestResult | None


def refresh(project: Project) -> RefreshResult:
    """Append production rows with actuals to the training table; raises DataRejected if they fail validation."""
    from cd4ml.monitor.live import LiveData, with_attributes
    from cd4ml.monitor.store import PredictionStore
    from cd4ml.release.registry import Registry

    cfg = project.config
    if not cfg.schema_.keys:
        raise ConfigError("refresh needs schema.keys to deduplicate rows; add the columns that identify a row",
                          key="schema.keys")
    store = PredictionStore(project)
    store.compact()
    # Every day of the store; test traffic and predictions dated out of range never become training rows.
    live = LiveData(cfg, store.predictions(), store.actuals(), windows=None)
    rows = live.frame[live.has_actual] if not live.frame.empty else live.frame
    candidates = len(rows)
    if rows.empty:
        return RefreshResult(0, 0, 0, 0, [], None)
    rows = rows.sort_values("served_at", kind="stable").drop_duplicates(cfg.schema_.keys, keep="last")

    release = None
    if cfg.features.lookups:
        registry = Registry.for_project(project)
        champion = registry.champion()
        if champion is not None:
            release = registry.load(str(champion.version), project.release_cache)
    attributes = with_attributes(cfg, release, rows)
    lookups = {c for lk in cfg.features.lookups for c in lk.columns}
    columns = {c: rows[c].to_numpy() if c in cfg.input_columns else
               attributes[c] if c in lookups and c in attributes else rows[f"actual_{c}"].to_numpy()
               for c in cfg.schema_.columns}
    frame = pd.DataFrame(columns)
    if cfg.schema_.columns[cfg.time_column].type != "int":  # an int time column holds years, not times
        frame[cfg.time_column] = pd.to_datetime(frame[cfg.time_column])
    for c, spec in cfg.schema_.columns.items():
        if spec.type in ("int", "float") and frame[c].dtype == object:
            frame[c] = pd.to_numeric(frame[c])

    required = [c for c, spec in cfg.schema_.columns.items() if not spec.nullable]
    gaps = frame[required].isna()
    incomplete = gaps.any(axis=1).to_numpy()
    missing = [c for c in required if gaps[c].any()]
    frame = frame[~incomplete]
    table = TrainingTable.for_project(project)
    new = table.rows_by_key(frame, cfg.schema_.keys, stored=False) if table.exists() else frame
    result = None if new.empty else store_frame(project, new, source=f"prediction store {project.monitor_dir}",
                                                 mode="append", origin="production")
    _to_history(project, frame)
    return RefreshResult(candidates, len(new), len(frame) - len(new), int(incomplete.sum()), missing, result)


def _to_history(project: Project, frame: pd.DataFrame) -> None:
    """The rows' actuals into the history store too, whichever way they came (by request id as well): the
    service's next forecasts read them. Values stored already are kept."""
    from cd4ml.serve.history import HistoryStore

    history = HistoryStore.for_project(project)
    if history is None or frame.empty:
        return
    try:
        history.seed({c: frame[c].to_numpy() for c in (*history.series, history.time, history.target)})
    finally:
        history.close()
