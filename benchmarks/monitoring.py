"""Monitoring benchmark: log compaction, drift comparison and `cd4ml monitor`'s report, each against a floor.

    .venv/bin/python benchmarks/monitoring.py [--events 200000] [--reps 3] [--drift-reps 30] [--out benchmarks/results]

Everything runs in this one process; each measurement alternates with its floor (floor, cd4ml,
floor, cd4ml, ...), so a machine that gets busier part-way hurts both sides alike. Medians are
reported, and the load average is recorded around every section.

1. **Compaction.** `--events` grocery prediction events (GroceryWorld days, 100 records per
   request, as `/predict` logs them) are written through the real `PredictionLog` into the log
   folder of a real project (`cd4ml init --example groceries`), then compacted by
   `PredictionStore(project).compact()` into an empty store (the store folder is removed before
   each repetition; the log files stay). Floors: reading the same files, `orjson.loads` of every
   line and `pa.Table.from_pylist(events)` (types inferred: times stay text); and a lean typed
   column build (`pa.array` per column with the store's types, the time text cast to a
   timestamp). To split cd4ml's time, the cost of one `write_deltalake` of the typed table into
   an empty folder is measured too. Also: a no-op compaction (nothing new in the log).
2. **Drift.** `drift.compare` of a 7,000-row window (10 stores x 100 items x 7 days) of the 10
   grocery columns of tests/monitor/test_drift.py, with predictions, targets and residuals,
   against a profile from `build_profile` on the 28 days before (28,000 rows). Floor: bare
   `np.histogram` (numeric, on the profile's edges) / `np.unique(return_counts=True)`
   (categorical) over the same columns, plus histograms of prediction and target.
3. **Report.** `build_report` on a trained small grocery project (in-process `cd4ml run`: 10
   stores x 100 items, 92 days, a small LightGBM) whose store holds 4 weeks x 1,000 predictions
   a day (the champion's real predictions, logged through `PredictionLog`) and their actuals by
   key (validated by `FeedbackSchema`, logged with prefix `actuals`), like the demo's scenario 6.
   The first report (which compacts the 4 weeks) is timed once; then the steady state (no-op
   compaction) alternates with the floor: DuckDB `SELECT count(*), avg(prediction)` over the
   predictions table and `count(*)` over the actuals table (Delta tables opened in the timed part).
   One more instrumented call splits the report's time into MLflow/registry access and data work.

Writes monitoring.json and monitoring.md to --out. The targets are this benchmark's own (see
`TARGETS`). Takes about a minute on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import child_env, machine, machine_line, write_results  # noqa: E402 - benchmarks/ is the script folder on sys.path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

# The targets (this benchmark's own; see the README section).
COMPACT_VS_FLOOR_MAX = 2.0  # compaction time / (orjson + typed column build) time: the lean floor, not from_pylist
NOOP_COMPACT_MAX_MS = 50.0  # nothing new: listing + one Delta history read per table
DRIFT_WINDOW_MAX_MS = 50.0  # one 7,000-row window of 10 columns, with segments
REPORT_MAX_S = 2.0  # steady-state build_report at 28,000 predictions + actuals

WORLD = {"n_stores": 10, "n_items": 100, "seed": 42}
DRIFT_COLUMNS = ["store_nbr", "item_nbr", "family", "item_class", "perishable", "city", "state", "store_type",
                 "cluster", "onpromotion"]
DRIFT_KINDS = {name: "numeric" if name == "item_class" else "categorical" for name in DRIFT_COLUMNS}
DRIFT_SEGMENTS = [["family", "onpromotion"], ["store_nbr", "family"]]
DRIFT_LIMITS = {"psi_alarm": 0.25, "ks_alarm": 0.1, "bias_alarm": 0.25, "min_rows": 200}
REFERENCE = ("2024-12-04", "2024-12-31")
WINDOW = ("2025-01-01", "2025-01-07")
REPORT_WORLD = {**WORLD, "start": "2024-10-01", "end": "2024-12-31"}
REPORT_MODEL = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "n_jobs": 1}
PRODUCTION = ("2025-01-01", "2025-01-28")  # 4 weeks after the training data
PER_REQUEST = 100
MARK = "@@BENCH@@"


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleave(sides: dict[str, Callable[[], Any]], reps: int, before: Callable[[], None] | None = None
               ) -> dict[str, list[float]]:
    """Run each side `reps` times, alternating; `before` (untimed) runs before every call."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            if before is not None:
                before()
            times[name].append(timed(fn)[0])
    return times


def git_commit(root: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark project"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=child_env())


def served_events(frame: Any, preds: Any, stamp: Callable[[int], str], version: str = "1") -> list[dict[str, Any]]:
    """Prediction events as `/predict` writes them: 100 records per request, one request id and latency each."""
    dates = frame["date"].dt.strftime("%Y-%m-%d").tolist()
    cols = {c: frame[c].tolist() for c in ("store_nbr", "item_nbr", "onpromotion")}
    preds = [float(p) for p in preds]
    events = []
    for start in range(0, len(dates), PER_REQUEST):
        request_id, now = uuid.uuid4().hex, stamp(start)
        latency = 0.6 + (start % 997) / 1000
        for record, i in enumerate(range(start, min(start + PER_REQUEST, len(dates)))):
            events.append({"request_id": request_id, "record": record, "time": now, "model_version": version,
                           "inputs": {"store_nbr": cols["store_nbr"][i], "item_nbr": cols["item_nbr"][i],
                                      "onpromotion": cols["onpromotion"][i], "date": dates[i]},
                           "output": preds[i], "fallback": False, "latency_ms": latency})
    return events


def write_log(directory: Path, events: list[dict[str, Any]], prefix: str = "predictions") -> dict[str, Any]:
    """Events through the real PredictionLog (queue big enough for all; drained on close)."""
    from cd4ml.serve.predlog import PredictionLog

    log = PredictionLog(directory, prefix=prefix, max_queue=len(events) + 1)
    log.emit_many(events)
    log.close()
    if log.dropped or log.written != len(events):
        raise SystemExit(f"PredictionLog wrote {log.written} of {len(events)} events ({log.dropped} dropped)")
    return {"files": len(log.files), "mb": round(sum(p.stat().st_size for p in log.files) / 2**20, 1)}


# ---------------------------------------------------------------------------------------------
# 1. Compaction


def bench_compaction(work: Path, n_events: int, reps: int) -> dict[str, Any]:
    import numpy as np
    import orjson
    import pyarrow as pa
    from deltalake import write_deltalake

    from cd4ml.config import load_project
    from cd4ml.examples.groceries import GroceryWorld
    from cd4ml.monitor.store import PredictionStore
    from cd4ml.scaffold import init_project

    root = work / "compact"
    init_project(root, "groceries")
    project = load_project(root)
    days = -(-n_events // (WORLD["n_stores"] * WORLD["n_items"]))
    first = np.datetime64(PRODUCTION[0])
    frame = GroceryWorld(**WORLD).sales(str(first), str(first + days - 1)).head(n_events)
    noise = np.random.default_rng(0).lognormal(0.0, 0.1, len(frame))
    preds = frame["expected_sales"].to_numpy() * noise
    t0 = dt.datetime(2025, 1, 1, 6, tzinfo=dt.timezone.utc)
    events = served_events(frame, preds, lambda i: (t0 + dt.timedelta(milliseconds=i)).isoformat())
    store = PredictionStore(project)
    log_info = write_log(store.log_dir, events)
    del events, frame
    files = sorted(p for p in store.log_dir.iterdir() if p.name.startswith("predictions-"))

    def read_events() -> list[Any]:
        out: list[Any] = []
        for p in files:
            out.extend([orjson.loads(line) for line in p.read_bytes().split(b"\n")[:-1]])
        return out

    def floor_pylist() -> pa.Table:
        return pa.Table.from_pylist(read_events())

    ts = pa.timestamp("us", tz="UTC")
    inputs_type = pa.struct([("date", pa.date32()), ("store_nbr", pa.int64()), ("item_nbr", pa.int64()),
                             ("onpromotion", pa.int64())])

    def floor_columns() -> pa.Table:
        ev = read_events()
        inputs = [e["inputs"] for e in ev]
        dates = pa.array([i["date"] for i in inputs], pa.string()).cast(pa.date32())
        struct = pa.StructArray.from_arrays(
            [dates, *[pa.array([i[c] for i in inputs], pa.int64()) for c in ("store_nbr", "item_nbr", "onpromotion")]],
            fields=list(inputs_type))
        return pa.table({"request_id": pa.array([e["request_id"] for e in ev], pa.string()),
                         "record": pa.array([e["record"] for e in ev], pa.int32()),
                         "served_at": pa.array([e["time"] for e in ev], pa.string()).cast(ts),
                         "model_version": pa.array([e["model_version"] for e in ev], pa.string()),
                         "prediction": pa.array([e["output"] for e in ev], pa.float64()),
                         "fallback": pa.array([e["fallback"] for e in ev], pa.bool_()),
                         "latency_ms": pa.array([e["latency_ms"] for e in ev], pa.float64()),
                         "inputs": struct})

    typed = floor_columns()
    delta_dir = work / "delta-write"

    def delta_write() -> None:
        write_deltalake(str(delta_dir), typed, mode="append")

    def reset() -> None:
        shutil.rmtree(store.directory, ignore_errors=True)
        shutil.rmtree(delta_dir, ignore_errors=True)

    results: dict[str, Any] = {}

    def cd4ml_compact() -> None:
        results["last"] = store.compact()

    load = [load1()]
    reset()
    cd4ml_compact()  # warm-up: imports, Delta writer, file cache
    floor_pylist()
    times = interleave({"floor_pylist": floor_pylist, "floor_columns": floor_columns, "cd4ml": cd4ml_compact,
                        "delta_write_only": delta_write}, reps, before=reset)
    r = results["last"]
    if (r.predictions, r.bad) != (n_events, 0):
        raise SystemExit(f"compaction stored {r.predictions} rows ({r.bad} bad) of {n_events}")
    reset()  # the last side of the loop may have been another one: compact everything once more, untimed
    store.compact()
    noop = [timed(store.compact)[0] for _ in range(10)]
    if store.compact().predictions:
        raise SystemExit("a compaction with nothing new stored rows")
    load.append(load1())
    med = {k: median(v) for k, v in times.items()}
    out = {
        "events": n_events, "log": log_info, "reps": reps,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "rows_per_s": {k: round(n_events / v) for k, v in med.items() if k != "delta_write_only"},
        "ratio_vs_floor_pylist": round(med["cd4ml"] / med["floor_pylist"], 2),
        "ratio_vs_floor_columns": round(med["cd4ml"] / med["floor_columns"], 2),
        "delta_write_share_of_cd4ml": round(med["delta_write_only"] / med["cd4ml"], 2),
        "noop_ms": {"median": ms(median(noop)), "min": ms(min(noop)), "max": ms(max(noop)), "runs": 10,
                    "all": [ms(x) for x in noop]},
        "load1": load,
    }
    print(f"compaction: cd4ml {out['rows_per_s']['cd4ml']:,} rows/s, floor {out['rows_per_s']['floor_pylist']:,} "
          f"rows/s -> ratio {out['ratio_vs_floor_pylist']}; no-op {out['noop_ms']['median']} ms", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# 2. Drift


def bench_drift(reps: int) -> dict[str, Any]:
    import numpy as np

    from cd4ml.examples.groceries import GroceryWorld
    from cd4ml.monitor.drift import NumericSummary, Profile, WindowDrift, build_profile, compare

    world = GroceryWorld(**WORLD)

    def rows(start: str, end: str) -> tuple[dict[str, Any], Any, Any, Any]:
        # Scored by a model that predicts the world's expected sales (as in tests/monitor/test_drift.py).
        sales = world.sales(start, end)
        pred = sales["expected_sales"].to_numpy()
        target = sales["unit_sales"].to_numpy()
        return {c: sales[c].to_numpy() for c in DRIFT_COLUMNS}, pred, target, np.log1p(target) - np.log1p(pred)

    ref_cols, ref_pred, ref_target, ref_res = rows(*REFERENCE)
    profile_s, profile = timed(lambda: build_profile(ref_cols, DRIFT_KINDS, ref_pred, ref_target, ref_res,
                                                     DRIFT_SEGMENTS))
    profile = Profile.from_json(json.loads(json.dumps(profile.to_json())))  # as stored with the model
    cols, pred, target, res = rows(*WINDOW)
    edges = {f.name: np.asarray(f.summary.edges) for f in profile.features if isinstance(f.summary, NumericSummary)}
    out_edges = {"prediction": np.asarray(profile.prediction.edges), "target": np.asarray(profile.target.edges)}

    def floor() -> None:
        for c in DRIFT_COLUMNS:
            if c in edges:
                np.histogram(cols[c].astype(np.float64), bins=np.concatenate(([-np.inf], edges[c], [np.inf])))
            else:
                np.unique(cols[c], return_counts=True)
        for k, x in (("prediction", pred), ("target", target)):
            np.histogram(x, bins=np.concatenate(([-np.inf], out_edges[k], [np.inf])))

    def floor_lean() -> None:  # np.unique sorts Python strings: a dict counts an object column faster
        for c in DRIFT_COLUMNS:
            if c in edges:
                np.histogram(cols[c].astype(np.float64), bins=np.concatenate(([-np.inf], edges[c], [np.inf])))
            elif cols[c].dtype == object:
                collections.Counter(cols[c].tolist())
            else:
                np.unique(cols[c], return_counts=True)
        for k, x in (("prediction", pred), ("target", target)):
            np.histogram(x, bins=np.concatenate(([-np.inf], out_edges[k], [np.inf])))

    def full() -> WindowDrift:
        return compare(profile, cols, pred, target, res, **DRIFT_LIMITS)

    def no_actuals() -> WindowDrift:  # before actuals arrive: no target, no segments
        return compare(profile, cols, pred, None, None, **DRIFT_LIMITS)

    load = [load1()]
    for fn in (floor, floor_lean, full, no_actuals):
        fn()
    times = interleave({"floor": floor, "floor_lean": floor_lean, "cd4ml": full, "cd4ml_no_actuals": no_actuals},
                       reps)
    load.append(load1())
    window = full()
    med = {k: median(v) for k, v in times.items()}
    out = {
        "reference_rows": len(ref_pred), "window_rows": window.rows, "columns": len(DRIFT_COLUMNS),
        "object_columns": sum(cols[c].dtype == object for c in DRIFT_COLUMNS),
        "segment_features": len(profile.segments), "segments_judged": len(window.segments), "reps": reps,
        "build_profile_ms": ms(profile_s),
        "median_ms": {k: ms(v) for k, v in med.items()},
        "min_ms": {k: ms(min(v)) for k, v in times.items()},
        "ratio_vs_floor": round(med["cd4ml"] / med["floor"], 1),
        "ratio_vs_floor_lean": round(med["cd4ml"] / med["floor_lean"], 1),
        "ratio_no_actuals_vs_floor": round(med["cd4ml_no_actuals"] / med["floor"], 1),
        "ratio_no_actuals_vs_floor_lean": round(med["cd4ml_no_actuals"] / med["floor_lean"], 1),
        "alarm": window.alarm, "load1": load,
    }
    print(f"drift: compare {out['median_ms']['cd4ml']} ms/window, floor {out['median_ms']['floor']} ms "
          f"-> ratio {out['ratio_vs_floor']}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# 3. build_report


class Split:
    """Self time (exclusive of nested wrapped calls) of wrapped functions, by category."""

    def __init__(self) -> None:
        self.self_s: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []  # time spent in wrapped children of each open call
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                children = self._stack.pop()
                self.self_s[label] = self.self_s.get(label, 0.0) + elapsed - children
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._stack:
                    self._stack[-1] += elapsed

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()


MLFLOW = "mlflow"  # label prefix of the registry/MLflow categories


def report_split(project: Any) -> tuple[float, dict[str, Any]]:
    """One build_report call with its time split by what it waits for."""
    from cd4ml import tracking
    from cd4ml.monitor import report as report_mod
    from cd4ml.monitor.live import LiveData
    from cd4ml.monitor.store import PredictionStore
    from cd4ml.release import listing
    from cd4ml.release.package import Release
    from cd4ml.release.registry import Registry

    s = Split()
    s.wrap(tracking, "connect", f"{MLFLOW}: tracking.connect (client)")
    s.wrap(listing, "list_releases", f"{MLFLOW}: list_releases (versions, runs' metrics)")
    s.wrap(Registry, "history", f"{MLFLOW}: history (release-event runs)")
    s.wrap(Registry, "champion", f"{MLFLOW}: champion alias")
    s.wrap(Registry, "load", f"{MLFLOW}: load (version lookup, cache check)")
    s.wrap(Release, "__init__", "release folder load (estimator, plan; local cache)")
    s.wrap(report_mod, "load_profile", "profile.json load")
    s.wrap(PredictionStore, "compact", "data: compaction (no-op)")
    s.wrap(PredictionStore, "predictions", "data: open Delta tables")
    s.wrap(PredictionStore, "actuals", "data: open Delta tables")
    s.wrap(LiveData, "__init__", "data: LiveData join (DuckDB) -> pandas")
    s.wrap(LiveData, "traffic", "data: traffic (pandas groupby)")
    s.wrap(report_mod, "_watched", "data: watched columns (release plan.derive)")
    s.wrap(report_mod, "_drift_windows", "data: drift windows (4 x compare)")
    s.wrap(report_mod, "_metrics", "data: accuracy metrics (per day, per release)")
    s.wrap(report_mod, "_prediction_histogram", "data: prediction histogram")
    try:
        total, _ = timed(lambda: report_mod.build_report(project))
    finally:
        s.restore()
    parts = {k: round(v, 4) for k, v in sorted(s.self_s.items(), key=lambda kv: -kv[1])}
    parts["other (report assembly, checks, masks)"] = round(total - sum(s.self_s.values()), 4)
    mlflow_s = sum(v for k, v in s.self_s.items() if k.startswith(MLFLOW))
    data_s = sum(v for k, v in s.self_s.items() if k.startswith("data:"))
    return total, {"total_s": round(total, 3), "parts_s": parts, "calls": s.calls,
                   "mlflow_registry_s": round(mlflow_s, 3), "data_s": round(data_s, 3),
                   "mlflow_registry_share": round(mlflow_s / total, 2), "data_share": round(data_s / total, 2)}


def cold_split(root: Path) -> dict[str, Any]:
    """The split of one report in a fresh process, as `cd4ml monitor` runs it: MLflow's import and first
    connection to the store land in its MLflow parts."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child-report-split", str(root)], env=child_env(),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the report child failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return {"process_wall_s": round(wall, 3), **json.loads(proc.stdout.rpartition(MARK)[2])}


def child_report_split(root: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import cd4ml.monitor.report  # noqa: F401 - numpy, pandas, cd4ml's config, metrics, drift, release package
    from cd4ml.config import load_project

    imported = time.perf_counter() - t0
    _, split = report_split(load_project(root))
    return {"import_report_module_s": round(imported, 3), "split": split}


def make_report_project(work: Path) -> tuple[Any, dict[str, Any]]:
    import numpy as np

    from cd4ml.config import edit_project_file, load_project
    from cd4ml.data.ingest import ingest
    from cd4ml.examples.groceries import GroceryWorld
    from cd4ml.release.registry import Registry
    from cd4ml.scaffold import init_project
    from cd4ml.serve.schema import FeedbackSchema
    from cd4ml.pipeline.run import run_pipeline

    info: dict[str, Any] = {}
    root = work / "report"
    t0 = time.perf_counter()
    init_project(root, "groceries")
    edit_project_file(root, {"source.options": REPORT_WORLD, "model.params": REPORT_MODEL, "feature_tests": None,
                             "acceptance.thresholds": {"nwrmsle": {"max": 1.0}}, "acceptance.beat_baseline": False,
                             "acceptance.latency_p99_ms": 1000})
    git_commit(root)
    project = load_project(root)
    ingest(project)
    result = run_pipeline(project)
    if not result.promoted:
        raise SystemExit(f"the benchmark project's first run was not promoted: {result}")
    info["train_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    cfg = project.config
    registry = Registry.for_project(project)
    release = registry.load(registry.champion().version, project.state_dir / "cache" / "releases")
    sales = GroceryWorld(**WORLD).sales(*PRODUCTION)
    preds = release.predict_frame(sales[["date", "store_nbr", "item_nbr", "onpromotion"]])
    day = sales["date"].dt.strftime("%Y-%m-%d").to_numpy()
    served = lambda i: f"{day[i]}T06:00:00.{i % 1000:03d}000+00:00"  # noqa: E731 - each forecast day's morning
    log_dir = project.resolve(cfg.serving.log_dir)
    info["predictions_log"] = write_log(log_dir, served_events(sales, preds, served, str(result.version)))
    # The day's actuals by key, with the stores' master data, as the demo posts them to /feedback.
    schema = FeedbackSchema(cfg)
    actuals = sales[["store_nbr", "item_nbr", "unit_sales", "expected_sales", "city", "state", "store_type",
                     "cluster"]].assign(date=day)
    events = []
    for d in np.unique(day):
        received = dt.datetime.fromisoformat(f"{d}T22:00:00+00:00")
        events += schema.events(actuals[actuals["date"] == d].to_dict("records"), source="http", received_at=received)
    info["actuals_log"] = write_log(log_dir, events, prefix="actuals")
    info["predictions"], info["actuals"] = len(sales), len(events)
    info["traffic_s"] = round(time.perf_counter() - t0, 1)
    return project, info


def bench_report(work: Path, reps: int) -> dict[str, Any]:
    import duckdb
    from deltalake import DeltaTable

    from cd4ml.monitor.report import build_report
    from cd4ml.monitor.store import PredictionStore

    load = [load1()]
    project, info = make_report_project(work)
    load.append(load1())
    first_s, first = timed(lambda: build_report(project))  # compacts the 4 weeks, then reports
    store = PredictionStore(project)

    def floor() -> tuple:
        con = duckdb.connect()
        con.register("p", DeltaTable(str(store.predictions_path)).to_pyarrow_dataset())
        con.register("a", DeltaTable(str(store.actuals_path)).to_pyarrow_dataset())
        row = con.execute("SELECT (SELECT count(*) FROM p), (SELECT avg(prediction) FROM p), "
                          "(SELECT count(*) FROM a)").fetchone()
        con.close()
        return row

    counts = floor()
    if (counts[0], counts[2]) != (info["predictions"], info["actuals"]):
        raise SystemExit(f"the store holds {counts} rows, {info['predictions']} predictions and "
                         f"{info['actuals']} actuals were logged")
    matched = first.feedback["matched"]
    times = interleave({"floor": floor, "cd4ml": lambda: build_report(project)}, reps)
    _, split = report_split(project)
    cold = cold_split(project.root)
    load.append(load1())
    med = {k: median(v) for k, v in times.items()}
    out = {
        **info, "reps": reps, "matched_actuals": matched, "drift_windows": len(first.drift.windows),
        "retrain_due": first.retrain_due,
        "first_report_s": round(first_s, 3),
        "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "ratio_vs_floor": round(med["cd4ml"] / med["floor"], 1),
        "split": split, "cold_process": cold, "load1": load,
    }
    print(f"report: build_report {out['median_s']['cd4ml']} s (first {out['first_report_s']} s), floor "
          f"{out['median_s']['floor']} s -> ratio {out['ratio_vs_floor']}; MLflow/registry "
          f"{split['mlflow_registry_s']} s, data {split['data_s']} s of {split['total_s']} s", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Output


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    c, d, r = doc["compaction"], doc["drift"], doc["report"]
    return [
        {"target": f"compaction <= {COMPACT_VS_FLOOR_MAX:g}x the lean floor (orjson + typed `pa.array` columns)",
         "value": f"{c['ratio_vs_floor_columns']}x", "met": c["ratio_vs_floor_columns"] <= COMPACT_VS_FLOOR_MAX},
        {"target": f"no-op compaction <= {NOOP_COMPACT_MAX_MS:g} ms", "value": f"{c['noop_ms']['median']} ms",
         "met": c["noop_ms"]["median"] <= NOOP_COMPACT_MAX_MS},
        {"target": f"drift compare <= {DRIFT_WINDOW_MAX_MS:g} ms per 7,000-row window",
         "value": f"{d['median_ms']['cd4ml']} ms", "met": d["median_ms"]["cd4ml"] <= DRIFT_WINDOW_MAX_MS},
        {"target": f"build_report (steady state, 4 weeks x 1,000/day) <= {REPORT_MAX_S:g} s",
         "value": f"{r['median_s']['cd4ml']} s", "met": r["median_s"]["cd4ml"] <= REPORT_MAX_S},
    ]


def _mark(met: bool) -> str:
    return "met" if met else "**missed**"


def markdown(doc: dict[str, Any]) -> str:
    m, c, d, r = doc["machine"], doc["compaction"], doc["drift"], doc["report"]
    sp, cold = r["split"], r["cold_process"]
    cs = cold["split"]
    v = m["versions"]
    lines = [
        "# Monitoring benchmark",
        "",
        f"{machine_line(m)}; deltalake {v['deltalake']}, pyarrow {v['pyarrow']}, duckdb {v['duckdb']}, "
        f"mlflow {v['mlflow']}, numpy {v['numpy']}. One process; each measurement alternates with its floor, "
        "medians reported. 1-min load per section (start, end) is given below: above ~1 on 2 cores, "
        "absolute times are inflated, ratios less so.",
        "",
        "## Targets (this benchmark's own)",
        "",
        "| target | value | |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['value']} | {_mark(t['met'])} |" for t in doc["targets"]],
        "",
        f"## 1. Compaction: {c['events']:,} prediction events ({c['log']['files']} log file(s), "
        f"{c['log']['mb']} MB), {c['reps']} reps, load {c['load1']}",
        "",
        "| | median s | rows/s | cd4ml time / this |",
        "|---|---:|---:|---:|",
        f"| `PredictionStore.compact()` (parse, typed columns, Delta commit) | {c['median_s']['cd4ml']} | "
        f"{c['rows_per_s']['cd4ml']:,} | 1 |",
        f"| floor: read + `orjson.loads` + `pa.Table.from_pylist` | {c['median_s']['floor_pylist']} | "
        f"{c['rows_per_s']['floor_pylist']:,} | {c['ratio_vs_floor_pylist']} |",
        f"| floor: read + `orjson.loads` + typed `pa.array` per column | {c['median_s']['floor_columns']} | "
        f"{c['rows_per_s']['floor_columns']:,} | {c['ratio_vs_floor_columns']} |",
        f"| only `write_deltalake` of the typed table (part of cd4ml's time) | {c['median_s']['delta_write_only']} "
        f"| | {round(c['delta_write_share_of_cd4ml'] * 100)}% of cd4ml |",
        "",
        f"Ratio cd4ml / floor: **{c['ratio_vs_floor_pylist']}** (from_pylist), {c['ratio_vs_floor_columns']} "
        f"(typed columns). No-op compaction (nothing new): median {c['noop_ms']['median']} ms "
        f"(min {c['noop_ms']['min']}, max {c['noop_ms']['max']}, {c['noop_ms']['runs']} runs).",
        "",
        f"## 2. Drift: one {d['window_rows']:,}-row window, {d['columns']} columns, profile of "
        f"{d['reference_rows']:,} rows, {d['reps']} reps, load {d['load1']}",
        "",
        "| | median ms | min ms |",
        "|---|---:|---:|",
        f"| `drift.compare` (PSI + KS per column, prediction, target, {d['segments_judged']} segments) | "
        f"{d['median_ms']['cd4ml']} | {d['min_ms']['cd4ml']} |",
        f"| `drift.compare` without actuals (no target, no segments) | {d['median_ms']['cd4ml_no_actuals']} | "
        f"{d['min_ms']['cd4ml_no_actuals']} |",
        f"| floor: `np.histogram` / `np.unique` over the same columns + prediction, target | "
        f"{d['median_ms']['floor']} | {d['min_ms']['floor']} |",
        f"| lean floor: the same, but the {d['object_columns']} text columns counted by `collections.Counter` | "
        f"{d['median_ms']['floor_lean']} | {d['min_ms']['floor_lean']} |",
        "",
        f"Ratio cd4ml / floor: **{d['ratio_vs_floor']}** ({d['ratio_no_actuals_vs_floor']} without actuals); "
        f"cd4ml / lean floor: **{d['ratio_vs_floor_lean']}** ({d['ratio_no_actuals_vs_floor_lean']} without "
        "actuals). `np.unique` sorts an object column's Python strings, which is why the plain floor is slow. "
        f"`build_profile` on the reference rows: {d['build_profile_ms']} ms (once).",
        "",
        f"## 3. `build_report`: {r['predictions']:,} predictions + {r['actuals']:,} actuals "
        f"({r['matched_actuals']:,} matched, {r['drift_windows']} drift windows), {r['reps']} reps, load {r['load1']}",
        "",
        "| | median s |",
        "|---|---:|",
        f"| `build_report` steady state (no-op compaction) | {r['median_s']['cd4ml']} |",
        f"| floor: DuckDB `count(*)`, `avg(prediction)` over the two Delta tables | {r['median_s']['floor']} |",
        f"| first `build_report` (compacts the 4 weeks of log, once) | {r['first_report_s']} |",
        "",
        f"Ratio cd4ml / floor: **{r['ratio_vs_floor']}**. Setup (not timed against anything): ingest + "
        f"`cd4ml run` {r['train_s']} s, traffic and actuals through the logs {r['traffic_s']} s.",
        "",
        f"Where one steady-state report's time goes (self time of each part; `mlflow:` parts talk to the "
        "MLflow tracking store / model registry, `data:` parts read and compute on the prediction store). "
        f"Warm: this process, MLflow already imported and connected: MLflow/registry **{sp['mlflow_registry_s']} s "
        f"= {round(sp['mlflow_registry_share'] * 100)}%**, data work **{sp['data_s']} s = "
        f"{round(sp['data_share'] * 100)}%** of {sp['total_s']} s. Fresh process (as `cd4ml monitor` runs it; "
        f"importing the report module took {cold['import_report_module_s']} s before this): MLflow/registry "
        f"**{cs['mlflow_registry_s']} s = {round(cs['mlflow_registry_share'] * 100)}%**, data work "
        f"**{cs['data_s']} s = {round(cs['data_share'] * 100)}%** of {cs['total_s']} s "
        f"(whole child process {cold['process_wall_s']} s).",
        "",
        "In the fresh process `tracking.connect` includes `import mlflow`, and the release folder load "
        "includes importing LightGBM.",
        "",
        "| part | warm s | fresh process s | calls |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {val} | {cs['parts_s'].get(k, '')} | {sp['calls'].get(k, '')} |"
          for k, val in sp["parts_s"].items()],
        "",
    ]
    return "\n".join(lines)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("cd4ml", "deltalake", "pyarrow", "duckdb", "orjson", "numpy", "scipy", "pandas",
                                    "mlflow")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="Prediction events to compact (default 200000).")
    ap.add_argument("--reps", type=int, default=3, help="Repetitions of compaction and report (default 3).")
    ap.add_argument("--drift-reps", type=int, default=30, help="Repetitions of the drift window (default 30).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--render", type=Path, metavar="JSON", help="Only rewrite the .md next to JSON (targets recomputed).")
    ap.add_argument("--child-report-split", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_report_split:
        sys.stdout.write(MARK + json.dumps(child_report_split(args.child_report_split)))
        return 0
    if args.render:
        doc = json.loads(args.render.read_text(encoding="utf-8"))
        doc["targets"] = targets(doc)
        args.render.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        args.render.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
        return 0

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the projects' own embedded stores
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cd4ml-bench-monitoring-") as tmp:
        work = Path(tmp)
        drift_doc = bench_drift(args.drift_reps)
        compaction = bench_compaction(work, args.events, args.reps)
        report = bench_report(work, args.reps)
    doc = {"machine": {**machine(), "loadavg_start": load_start, "versions": versions()},
           "settings": {"events": args.events, "reps": args.reps, "drift_reps": args.drift_reps},
           "compaction": compaction, "drift": drift_doc, "report": report,
           "total_s": round(time.perf_counter() - t0, 1)}
    doc["targets"] = targets(doc)
    write_results(args.out, "monitoring", doc, markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
