"""Prometheus metrics of the prediction service: `GET /metrics` in the text exposition format.

What is measured (units in the names: seconds, counts; values are the model's own units):

- `cd4ml_requests_total{endpoint,status,model_version}`: /predict requests by HTTP status;
  `model_version` is "" when no release was live.
- `cd4ml_request_duration_seconds{endpoint}`: /predict wall time inside the app (seconds).
- `cd4ml_predict_calls_total`: feature + estimator calls; concurrent requests merged by the
  micro-batcher share one, so requests / calls is the mean merge size.
- `cd4ml_predictions_total{model_version}`, `cd4ml_fallback_predictions_total{model_version}`:
  records predicted, and those that hit an unknown category (the fallback path).
- `cd4ml_prediction_value`: histogram of predicted values over fixed generic buckets
  (`PREDICTION_BUCKETS`, 0 .. 5000 plus +Inf); they suit counts/sales-like targets, not every target
  (a classifier's answers are counted, not histogrammed).
- `cd4ml_release_info{model_version,data_version,git_commit}` = 1 for the live release,
  `cd4ml_release_swaps_total`: releases switched to (with N workers, each worker counts its own swaps).
- `cd4ml_prediction_log_events_total{outcome="written"|"dropped"}`.
- From `<monitor_dir>/report.json` (written by `cd4ml monitor`), read at scrape time:
  `cd4ml_drift_psi{feature}`, `cd4ml_drift_alarm{feature}` (the latest judged drift window; the
  prediction's own drift as `feature="prediction"`, a classifier's class probabilities as
  `feature="probability of <class>"`), `cd4ml_live_metric{metric,model_version}`,
  `cd4ml_offline_metric{metric,model_version}`, `cd4ml_live_rows{model_version}`,
  `cd4ml_retrain_due`, `cd4ml_monitor_report_timestamp_seconds`, and the release process's own DORA
  measures over the report's window: `cd4ml_delivery_deployments_per_week`,
  `cd4ml_delivery_lead_time_hours`, `cd4ml_delivery_change_failure_rate`, `cd4ml_delivery_restore_hours`.

One worker keeps its metrics in a per-app `CollectorRegistry` (several apps in one process do not
clash). With several uvicorn workers, `cd4ml serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
folder before the workers start; every worker then writes its samples to memory-mapped files
there and any worker's /metrics aggregates all of them (`WorkerFilesCollector`). Counters that
mirror the watcher and the prediction log are synced by deltas: at every scrape and, with several
workers, once a second from a background thread (so a worker that nobody scrapes still reports).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cd4ml.verdicts import judged_window

log = logging.getLogger("cd4ml.serve")

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREDICT = "/predict"
#: Request latency buckets (seconds): 0.5 ms .. 2.5 s; 50 ms is a boundary because the p99 alert uses it.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Predicted-value buckets (target units): generic, not fitted to any project's target.
PREDICTION_BUCKETS = (0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
SYNC_SECONDS = 1.0  # multi-worker only: how stale release info and log counters may get (seconds)


def multiprocess_dir() -> str | None:
    """The multiprocess folder, if prometheus_client was imported with one (None: single process).

    prometheus_client picks its value storage at import time, so a variable set later does not
    count: the metrics would stay in process memory and the folder would stay empty.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return None
    if values.ValueClass is values.MutexValue:
        log.warning("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                    "metrics stay per process")
        return None
    return path


class ServiceMetrics:
    """The service's metrics: cheap recorders for the request path plus the /metrics exposition."""

    def __init__(self, monitor_dir: Path, *, multiproc_dir: str | None = None) -> None:
        """`multiproc_dir`: aggregate every worker's samples from this folder (None: this process only)."""
        self.multiproc_dir = multiproc_dir
        # Multi-worker: the metric objects only write to the mmap files; exposition reads the files.
        own = None if multiproc_dir else CollectorRegistry(auto_describe=True)
        self.requests = Counter("cd4ml_requests", "Prediction requests by HTTP status and model version.",
                                ["endpoint", "status", "model_version"], registry=own)
        self.duration = Histogram("cd4ml_request_duration_seconds", "Time spent in the app per request, seconds.",
                                  ["endpoint"], buckets=DURATION_BUCKETS, registry=own)
        self.predictions = Counter("cd4ml_predictions", "Records predicted.", ["model_version"], registry=own)
        self.calls = Counter("cd4ml_predict_calls", "Feature + estimator calls (merged requests share one).",
                             registry=own)
        self.fallbacks = Counter("cd4ml_fallback_predictions",
                                 "Records predicted with an unknown category (fallback path).",
                                 ["model_version"], registry=own)
        self.values = Histogram("cd4ml_prediction_value",
                                "Predicted values, in target units (generic fixed buckets).",
                                buckets=PREDICTION_BUCKETS, registry=own)
        # livemax: a series is 1 while any live worker serves that release; a worker's file is
        # dropped when it exits (mark_process_dead), so a dead worker's release does not linger.
        self.release = Gauge("cd4ml_release_info", "1 for the release being served.",
                             ["model_version", "data_version", "git_commit"], registry=own,
                             multiprocess_mode="livemax")
        self.swaps = Counter("cd4ml_release_swaps", "Releases switched to (per worker, summed).", registry=own)
        self.log_events = Counter("cd4ml_prediction_log_events", "Prediction log events by outcome.",
                                  ["outcome"], registry=own)
        self._written = self.log_events.labels("written")
        self._dropped = self.log_events.labels("dropped")
        self._duration = self.duration.labels(PREDICT)
        # Pre-bound children: `.labels()` costs a lock and a dict lookup on label strings.
        self._requests: dict[tuple[str, int], Any] = {}
        self._per_version: dict[str, tuple[Any, Any]] = {}

        self.report = ReportCollector(Path(monitor_dir) / "report.json")
        self.registry = CollectorRegistry()
        if multiproc_dir:
            self.registry.register(WorkerFilesCollector(multiproc_dir))
        else:
            self.registry = own  # type: ignore[assignment]
        self.registry.register(self.report)

        self._sync_lock = threading.Lock()
        self._seen = {"swaps": 0, "written": 0, "dropped": 0}
        self._release_labels: tuple[str, str, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path ---------------------------------------------------------------------

    def request(self, version: str | None, status: int, seconds: float) -> None:
        """Count one /predict request that took `seconds`; never raises."""
        try:
            key = (version or "", status)
            child = self._requests.get(key)
            if child is None:
                child = self._requests[key] = self.requests.labels(PREDICT, str(status), key[0])
            child.inc()
            self._duration.observe(seconds)
        except Exception:  # metrics must never fail a request
            log.exception("metrics: cannot record a request")

    def predicted(self, version: str, predictions: np.ndarray, fallbacks: int) -> None:
        """Count the records of one answered request and histogram their values; never raises."""
        try:
            pair = self._per_version.get(version)
            if pair is None:
                pair = self._per_version[version] = (self.predictions.labels(version), self.fallbacks.labels(version))
            n = len(predictions)
            pair[0].inc(n)
            if fallbacks:
                pair[1].inc(fallbacks)
            if predictions.ndim > 1:  # class probabilities: no value in target units to histogram
                return
            # One observe() per record: the Histogram has no public bulk update. NaN/inf
            # would poison the sum.
            for p in predictions[np.isfinite(predictions)].tolist():
                self.values.observe(p)
        except Exception:
            log.exception("metrics: cannot record predictions")

    # -- state mirrored from the watcher and the prediction log -------------------------------

    def sync(self, watcher: Any, predlog: Any) -> None:
        """Bring release info, swaps and log counters up to date with `watcher` and `predlog`; never raises."""
        try:
            with self._sync_lock:
                live = watcher.current
                if live is not None:
                    info = live.info
                    labels = (str(live.version), _label(info.get("data_version")), _label(info.get("git_commit")))
                    if labels != self._release_labels:
                        if self._release_labels is not None:
                            self._retire(self._release_labels)
                        self.release.labels(*labels).set(1)
                        self._release_labels = labels
                self._advance("swaps", watcher.swaps, self.swaps)
                if predlog is not None:
                    self._advance("written", predlog.written, self._written)
                    self._advance("dropped", predlog.dropped, self._dropped)
        except Exception:
            log.exception("metrics: cannot sync release and log counters")

    def _retire(self, labels: tuple[str, str, str]) -> None:
        if self.multiproc_dir:
            self.release.labels(*labels).set(0)  # mmap samples cannot be removed; 0 = no longer served
        else:
            self.release.remove(*labels)

    def _advance(self, name: str, total: int, counter: Any) -> None:
        delta = total - self._seen[name]
        if delta > 0:
            counter.inc(delta)
            self._seen[name] = total

    def start(self, watcher: Any, predlog: Any) -> None:
        """Sync now; with several workers also every `SYNC_SECONDS` (a worker nobody scrapes still reports)."""
        self.sync(watcher, predlog)
        if self.multiproc_dir and self._thread is None:
            def run() -> None:
                while not self._stop.wait(SYNC_SECONDS):
                    self.sync(watcher, predlog)

            self._thread = threading.Thread(target=run, name="cd4ml-metrics-sync", daemon=True)
            self._thread.start()

    def stop(self, watcher: Any, predlog: Any) -> None:
        """Final sync (after the prediction log flushed); a worker's live gauges leave with it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sync(watcher, predlog)
        if self.multiproc_dir:
            try:
                multiprocess.mark_process_dead(os.getpid(), self.multiproc_dir)
            except OSError as exc:
                log.warning("metrics: cannot drop this worker's live gauges: %s", exc)

    def exposition(self) -> bytes:
        """The text exposition of every metric (all workers' when in multiprocess mode)."""
        return generate_latest(self.registry)


class WorkerFilesCollector:
    """Every worker's samples merged from the multiprocess folder, as `MultiProcessCollector` does,
    minus the files that are still empty.

    prometheus_client creates a worker's file before it sizes it; a scrape that reads it in that moment
    fails whole (a 500), and a worker killed in that moment leaves the empty file for good
    (prometheus/client_python#1199). An empty file holds no sample yet, so skipping it loses nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self.path, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # a dead worker's live gauges, just removed
                if os.path.getsize(path) > 0:
                    files.append(path)
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


class ReportCollector:
    """Gauges from the monitoring report (`report.json`, format 1), read at scrape time.

    The file is re-read only when its mtime or size changes. A missing, unreadable or
    malformed file exposes nothing of it (a malformed section drops only that section);
    a scrape never fails because of the report.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._families: list[Metric] = []
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the file; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                self._families = self._read()
                self._key = key
            return list(self._families)

    def _read(self) -> list[Metric]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("metrics: ignoring unreadable %s: %s", self.path, exc)
            return []
        if not isinstance(doc, dict):
            return []
        families: list[Metric] = []
        for section in (_drift, _releases, _status, _delivery):
            try:
                families.extend(section(doc))
            except Exception as exc:  # one odd section must not hide the others
                log.warning("metrics: ignoring a malformed part of %s: %s: %s", self.path, type(exc).__name__, exc)
        return families


def _number(value: Any) -> float | None:
    """A finite-or-not JSON number as float; bools become 0/1; anything else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _drift(doc: dict[str, Any]) -> Iterator[Metric]:
    last = judged_window(doc)
    if last is None:
        return
    psi = GaugeMetricFamily("cd4ml_drift_psi", "Population stability index per feature, latest judged drift window.",
                            labels=["feature"])
    alarm = GaugeMetricFamily("cd4ml_drift_alarm", "1 if the feature drifted in the latest judged drift window.",
                              labels=["feature"])
    entries = [(str(f.get("name")), f) for f in last.get("features") or []]
    if isinstance(last.get("prediction"), dict):
        entries.append(("prediction", last["prediction"]))
    entries += [(f"probability of {p.get('name')}", p) for p in last.get("probabilities") or [] if isinstance(p, dict)]
    for name, entry in entries:
        if (v := _number(entry.get("psi"))) is not None:
            psi.add_metric([name], v)
        if (v := _number(entry.get("alarm"))) is not None:
            alarm.add_metric([name], v)
    yield psi
    yield alarm


def _releases(doc: dict[str, Any]) -> Iterator[Metric]:
    live = GaugeMetricFamily("cd4ml_live_metric", "Live metric per release (from actuals).",
                             labels=["metric", "model_version"])
    offline = GaugeMetricFamily("cd4ml_offline_metric", "Offline (holdout) metric per release.",
                                labels=["metric", "model_version"])
    rows = GaugeMetricFamily("cd4ml_live_rows", "Rows with actuals behind the live metrics.",
                             labels=["model_version"])
    for rel in doc.get("releases") or []:
        version = str(rel.get("version"))
        for metric, value in (rel.get("offline") or {}).items():
            if (v := _number(value)) is not None:
                offline.add_metric([str(metric), version], v)
        measured = rel.get("live") or {}
        for metric, value in (measured.get("metrics") or {}).items():
            if (v := _number(value)) is not None:
                live.add_metric([str(metric), version], v)
        if (v := _number(measured.get("rows"))) is not None:
            rows.add_metric([version], v)
    yield from (live, offline, rows)


def _status(doc: dict[str, Any]) -> Iterator[Metric]:
    if (due := _number(doc.get("retrain_due"))) is not None:
        yield GaugeMetricFamily("cd4ml_retrain_due", "1 if the retraining policy says a retrain is due.", value=due)
    generated = doc.get("generated_at")
    if isinstance(generated, str):
        when = dt.datetime.fromisoformat(generated)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        yield GaugeMetricFamily("cd4ml_monitor_report_timestamp_seconds",
                                "When the monitoring report was generated, Unix seconds.", value=when.timestamp())


# The report's delivery measures (`delivery`, the release process's DORA measures) as gauges.
_DELIVERY = {"per_week": ("cd4ml_delivery_deployments_per_week", "Versions made champion per week (report window)."),
             "lead_time_hours_median": ("cd4ml_delivery_lead_time_hours", "Median hours, commit -> champion."),
             "change_failure_rate": ("cd4ml_delivery_change_failure_rate",
                                     "Share of the window's deployments later rolled back."),
             "restore_hours_median": ("cd4ml_delivery_restore_hours", "Median hours, champion -> rolled back.")}


def _delivery(doc: dict[str, Any]) -> Iterator[Metric]:
    delivery = doc.get("delivery")
    if not isinstance(delivery, dict):
        return
    for key, (name, doc_text) in _DELIVERY.items():
        if (v := _number(delivery.get(key))) is not None:  # a measure with nothing to measure is left out
            yield GaugeMetricFamily(name, doc_text, value=v)
