"""The loop as Python calls, for notebooks and orchestrators (Airflow, Prefect, Dagster tasks).

Each call does what the CLI command of the same name does, with the same checks and the same
errors (`cd4ml.errors.Cd4mlError` and its subclasses, each carrying the CLI's exit code), and
returns a typed result instead of printing. `import cd4ml` exposes these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from cd4ml.config import Project
    from cd4ml.release.package import Release
    from cd4ml.pipeline.run import RunResult


def run(project: "Project", *, data_version: int | None = None, promote: bool | None = None,
        force: bool = False) -> "RunResult":
    """`cd4ml run`: train on one pinned table version (default: the latest), evaluate, register, gate
    and (if `registry.auto_promote`, or `promote=True`) promote.

    A run that repeats an earlier one (same data version, feature code and config) is not trained
    again: the earlier run's result comes back with `skipped_as` set, unless `force`. A model the
    gate rejects is a result with `gate.passed` False, not an exception.
    """
    from cd4ml.pipeline.run import run_pipeline

    return run_pipeline(project, data_version=data_version, promote=promote, force=force)


def load_release(project: "Project", version: str | int | None = None, *, threads: int = 0) -> "Release":
    """A registered release, downloaded once into the project's release cache and verified against
    the digest recorded at registration; `version` None: the champion.

    `threads`: the model's threads per predict call (0: all cores, for batch work; 1 as served).
    Raises `ReleaseError` if there is no champion or the files differ from those registered.
    """
    from cd4ml.errors import ReleaseError
    from cd4ml.release.registry import Registry

    registry = Registry.for_project(project)
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise ReleaseError(f"model {registry.name!r} has no champion yet: run `cd4ml run` first")
        version = champion.version
    return registry.load(str(version), project.release_cache, threads)


def score(project: "Project", frame: "pd.DataFrame", version: str | int | None = None) -> "np.ndarray":
    """Batch scoring: predictions in target units, shape (len(frame),), for rows that carry the
    release's input columns (as `/predict` records do; other columns are ignored), by the champion
    or `version`. The same release code and model as the service: equal answers, bit for bit. History
    features read the project's history store, as the service does; rows it cannot forecast (before the
    release's history cut-off, beyond the latest actual plus the horizon) raise `DataRejected`, unless
    `serving.stale_history: fallback`."""
    from cd4ml.errors import DataRejected
    from cd4ml.serve.history import HistoryStore, unforecastable

    release = load_release(project, version)
    release.require_inputs(frame)
    frame = release.dated(frame)
    store = HistoryStore.for_project(project)
    spec = release.spec.history
    if spec is None or store is None or release.history_rows is None:
        return release.predict_frame(frame)
    try:
        store.seed(release.history_rows)
        stale = unforecastable(spec, release.history_end, store.latest(), frame[spec.time].to_numpy())
        if stale and project.config.serving.stale_history == "reject":
            shown = "; ".join(f"row {i + 1}: {why}" for i, why in sorted(stale.items())[:5])
            raise DataRejected(f"{len(stale)} row(s) have no history to forecast from: {shown}")
        rows = store.rows_since(spec, release.history_end)  # what the service reads
    finally:
        store.close()
    return release.predict_frame(frame, rows)
