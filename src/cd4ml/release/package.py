"""The packaged model: estimator + fitted feature tables + the feature code itself.

Layout of a release folder (stored as an MLflow model's artifact):

    release.json    spec, input schema, estimator metadata, lineage
    tables.npz      fitted lookup/encoding tables (plain arrays, no pickle)
    estimator/      the estimator (LightGBM text model or skops file)
    profile.json    reference profile of the holdout, for drift (cd4ml.monitor.profile)
    history.npz     with history features: each series' latest values, as many steps as they read
    code/           snapshot: cd4ml's transforms + the project's feature modules

`Release` loads a folder and predicts from column batches or DataFrames; the
same object backs the MLflow pyfunc flavour, the gate's checks and serving.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from cd4ml.config import DATE_TYPES
from cd4ml.errors import ReleaseError
from cd4ml.features import transforms
from cd4ml.features.code import CodeSnapshot
from cd4ml.periods import PERIODS
from cd4ml.release import estimators
from cd4ml.task import Task, task_from_spec

RELEASE_FILE = "release.json"
EXAMPLE_FILE = "example.json"
HISTORY_FILE = "history.npz"
_FACTORIZE_ROWS = 4096


def frame_to_batch(frame: pd.DataFrame, columns: list[str] | None = None, *,
                   shared_text: bool = False) -> dict[str, np.ndarray]:
    """DataFrame -> column batch (text as numpy unicode, times as datetime64).

    `shared_text`: large text columns as object arrays pointing at their distinct strings
    (`transforms.shared_text`), for training batches: 8 bytes a row instead of 4 a character.
    """
    out = {}
    for c in columns or list(frame.columns):
        column = frame[c]
        if len(column) > _FACTORIZE_ROWS and isinstance(column.dtype, pd.StringDtype) and not column.hasnans:
            # Text repeats: converting each distinct value once and gathering costs a fraction of
            # converting every row, and gives the same array (same values, same fixed width).
            codes, distinct = pd.factorize(column)
            distinct = distinct.to_numpy()
            out[c] = transforms.shared_text(distinct, codes) if shared_text else distinct.astype(str)[codes]
            continue
        values = column.to_numpy()
        out[c] = values.astype(str) if values.dtype.kind == "O" else values
    return out


def request_columns(spec: transforms.FeatureSpec, available: list[str]) -> list[str]:
    """The columns of `available` a release reads: its inputs and any lookup attributes given."""
    wanted = set(spec.inputs) | set(spec.lookup_columns)
    return [c for c in available if c in wanted]


def history_tail(spec: transforms.HistorySpec, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of each series' latest `spec.lookback` steps before the rows' last step (the release's
    history cut-off): all a forecast after the cut-off reads that its history store may not have yet."""
    steps = transforms.time_steps(transforms.as_time(rows[spec.time]), spec.count, spec.unit)
    keep = steps > steps.max() - spec.lookback if len(steps) else np.zeros(0, dtype=bool)
    return {c: (v.astype(str) if v.dtype.kind == "O" else v)[keep] for c, v in rows.items()}


def save_release(folder: Path, *, spec: transforms.FeatureSpec, plan: Any, estimator: Any, snapshot: CodeSnapshot,
                 inputs: list[dict[str, str]], info: dict[str, Any], example: pd.DataFrame,
                 history: Mapping[str, np.ndarray] | None = None) -> None:
    """Write everything a release needs to predict into `folder`.

    `spec`: the plan's, with the run's own task (its decision threshold may be chosen after the plan
    is fitted). `example`: a few input rows, kept so a service can warm up and check the release.
    `history`: with history features, the rows they read (the run's version); its tail is packaged.
    """
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "tables.npz", **plan.arrays)
    if spec.history is not None:
        assert history is not None
        np.savez(folder / HISTORY_FILE, **history_tail(spec.history, history))
    estimator_meta = estimators.save(estimator, folder / "estimator")
    if snapshot.path != folder / "code":
        shutil.copytree(snapshot.path, folder / "code", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    example.to_json(folder / EXAMPLE_FILE, orient="records", date_format="iso", date_unit="s")
    doc = {"format_version": 1, "spec": spec.to_json(), "inputs": inputs, "estimator": estimator_meta,
           "feature_names": plan.feature_names, "info": info}
    (folder / RELEASE_FILE).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")


class Release:
    """A loaded release: `predict(batch)` -> predictions in target units, shape (n,), or for a
    classification task (n, k) class probabilities (calibrated if trained so), columns in `task.classes`
    order; `task` is the release's own (its classes and decision threshold)."""

    def __init__(self, folder: Path, threads: int = 1) -> None:
        """`threads`: the estimator's threads per predict call; 1 to serve (a service scales with
        processes), 0 for all cores in batch work (the gate's parity and champion scoring)."""
        folder = Path(folder)
        try:
            doc = json.loads((folder / RELEASE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"{folder}: not a cd4ml release ({exc})") from None
        self.folder = folder
        self.info: dict[str, Any] = doc["info"]
        self.inputs: list[dict[str, str]] = doc["inputs"]
        self.snapshot = CodeSnapshot(folder / "code")
        self.spec = transforms.FeatureSpec.from_json(doc["spec"])
        custom = self.snapshot.resolve(list(self.spec.custom))
        with np.load(folder / "tables.npz", allow_pickle=False) as tables:
            arrays = {k: tables[k] for k in tables.files}
        # The release's own feature code gets the JSON: an old copy reads the dict, not a FeatureSpec.
        self.plan = self.snapshot.transforms().FeaturePlan(doc["spec"], arrays, custom)
        self.task: Task = task_from_spec(self.spec.task)  # regression for a release without one
        self.estimator = estimators.load(folder / "estimator", doc["estimator"], threads)
        # With history features: the packaged history (`history_tail`), indexed on first use.
        self.history_rows: dict[str, np.ndarray] | None = None
        # The latest time of the packaged history (datetime64[s]): the release's history cut-off.
        self.history_end: np.datetime64 | None = None
        if self.spec.history is not None:
            with np.load(folder / HISTORY_FILE, allow_pickle=False) as rows:
                self.history_rows = {k: rows[k] for k in rows.files}
            times = self.history_rows[self.spec.history.time]
            self.history_end = transforms.as_time(times).max() if len(times) else None
        self._packaged: Any = None

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    def _history(self, history: Any) -> dict[str, Any]:
        """The `history` argument of the plan's transforms: none for a release without history features
        (whose packaged code may predate them); the packaged history unless `history` is given."""
        if self.spec.history is None:
            return {}
        if history is None:
            if self._packaged is None:
                self._packaged = self.plan.history(self.history_rows)
            history = self._packaged
        return {"history": history}

    def predict(self, batch: Mapping[str, np.ndarray], history: Any = None) -> np.ndarray:
        """`history`: the rows (series, time, target) history features read; default the packaged ones."""
        X = self.plan.transform(batch, **self._history(history))
        return self.plan.inverse_target(self.estimator.predict(X))

    def predict_checked(self, batch: Mapping[str, np.ndarray], history: Any = None
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`predict`, and per input column whose values the model learned (lookup keys, categories)
        a bool mask (n,) of values it never saw in training."""
        X, unknown = self.features_checked(batch, history)
        return self.predict_features(X), unknown

    def features_checked(self, batch: Mapping[str, np.ndarray], history: Any = None
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The feature matrix of `batch` and the unknown-value masks of `predict_checked`."""
        checked = getattr(self.plan, "transform_checked", None)
        if checked is None:  # feature code packaged before the one-pass transform
            return self.plan.transform(batch), self.plan.unknown_inputs(batch)
        return checked(batch, **self._history(history))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Predictions in target units from a feature matrix of `features_checked`."""
        return self.plan.inverse_target(self.estimator.predict(X))

    def require_inputs(self, frame: pd.DataFrame) -> None:
        """ReleaseError naming the input columns `frame` lacks."""
        missing = [c for c in self.input_names if c not in frame.columns]
        if missing:
            raise ReleaseError(f"input is missing column(s): {', '.join(missing)}")

    def dated(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with its week and month inputs given as text (2024-W05, as requests give them) read as the
        dates their periods start, as the training table holds them; ReleaseError naming a value that is none."""
        out = frame
        for item in self.inputs:
            period, name = PERIODS.get(item["type"]), item["name"]
            if period is None or name not in frame.columns or frame[name].dtype.kind == "M":
                continue
            days = period.starts(frame[name].to_numpy())
            bad = np.flatnonzero(np.isnat(days) & frame[name].notna().to_numpy())
            if len(bad):
                raise ReleaseError(f"column {name}, row {bad[0] + 1}: expected a {period.name} written "
                                   f"{period.example}, got {str(frame[name].iloc[bad[0]])[:40]!r}")
            out = out.assign(**{name: days})
        return out

    def predict_frame(self, frame: pd.DataFrame, history: Any = None) -> np.ndarray:
        self.require_inputs(frame)
        frame = self.dated(frame)
        return self.predict(frame_to_batch(frame, request_columns(self.spec, list(frame.columns))), history)

    def example(self) -> pd.DataFrame:
        """The input rows packaged for warm-up (types as in the training table)."""
        frame = pd.read_json(self.folder / EXAMPLE_FILE, orient="records", convert_dates=False)
        for item in self.inputs:
            if item["type"] in ("datetime", *DATE_TYPES):
                frame[item["name"]] = pd.to_datetime(frame[item["name"]])
        return frame

    def latency_ms(self, frame: pd.DataFrame, n: int = 300) -> np.ndarray:
        """Wall time of `n` single-row predictions (ms each), rows drawn from `frame` in order; as served
        only with `threads=1`."""
        batch = frame_to_batch(frame.iloc[: min(n, len(frame))], self.input_names)
        rows = [{c: v[i : i + 1] for c, v in batch.items()} for i in range(len(next(iter(batch.values()))))]
        self.predict(rows[0])  # warm-up: first call pays one-off allocation costs
        out = []
        for i in range(n):
            row = rows[i % len(rows)]
            t0 = time.perf_counter()
            self.predict(row)
            out.append((time.perf_counter() - t0) * 1000.0)
        return np.asarray(out)
