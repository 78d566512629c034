"""The online history store: each series' actuals, as a service reads them for history features.

A release packages its series' latest values (`package.history_tail`); from then on actuals arrive
through `POST /feedback`, `cd4ml feedback` and `cd4ml data refresh` and are stored here, so tomorrow's
forecast reads today's actual. The store is one SQLite file per model under the project's
`.cd4ml/history/`, in WAL mode: a service's workers read it while another process writes, and a
restart loses nothing. A row is one series at one time (seconds since 1970, as `transforms.as_time`
reads the time column) with its target value; an actual sent again replaces the stored one, so
actuals arriving twice or out of order leave one row per series and time.

An actual sent by its prediction's request id names no series or time: the service notes each live
prediction's validated records (`note_served`: one JSON text per request, written by a background thread
off the request path), and such an actual is stored under its record's series and time (and covariates). One that arrives before its prediction's note
is written (another worker's, a few hundred ms behind) waits in the store and is stored when the note
is: whichever comes second completes the pair, in one transaction.

A forecast is asked for a time after the release's history cut-off (the latest time it packaged) and
at most `forecast.horizon` steps after the latest actual stored (`unforecastable`): anything else
would read history the service does not have, and is answered 422 (or, with
`serving.stale_history: fallback`, predicted from what there is and flagged).

`HistoryStore` is the interface a server database could implement later: `seed`, `add_actuals`,
`note_served`, `latest`, `version`, `rows_since`.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import orjson

from cd4ml.config import Project
from cd4ml.faults import crash_point
from cd4ml.features.transforms import HistorySpec, as_time, time_steps

log = logging.getLogger("cd4ml.serve")

# A step's longest length in seconds: how far back a query must reach for `lookback` steps.
_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "D": 86_400, "W": 7 * 86_400, "MS": 31 * 86_400, "YS": 366 * 86_400}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    series TEXT NOT NULL,      -- the series' key values, a JSON list in forecast.series order
    t INTEGER NOT NULL,        -- seconds since 1970-01-01
    value REAL NOT NULL,       -- the target's actual
    PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_t ON history (t);
CREATE TABLE IF NOT EXISTS inputs (    -- the covariates' values (features.history.columns), as the target's
    series TEXT NOT NULL,
    name TEXT NOT NULL,                -- the column
    t INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series, name, t)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inputs_t ON inputs (t);
CREATE TABLE IF NOT EXISTS served (    -- a live prediction's records, for their actuals by request id
    request_id TEXT PRIMARY KEY,
    noted INTEGER NOT NULL,            -- seconds since 1970
    records TEXT NOT NULL              -- JSON: its records' inputs, as validated
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS served_noted ON served (noted);
CREATE TABLE IF NOT EXISTS waiting (   -- actuals by request id whose prediction's record is not in served yet
    request_id TEXT NOT NULL,
    record INTEGER NOT NULL,
    value REAL NOT NULL,
    received INTEGER NOT NULL,         -- seconds since 1970
    PRIMARY KEY (request_id, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('history_changes', 0);
"""
# An actual by request id waits this long for its prediction's record; one for a prediction never noted
# (a mistyped id, test traffic) is dropped then.
WAIT_SECONDS = 86_400
# Live predictions' notes are written this often (and with every actuals write of the same process).
NOTE_SECONDS = 0.2
_WAITING_NOTED = """SELECT w.request_id, w.record, w.value, s.records
    FROM waiting w JOIN served s USING (request_id)"""


def series_key(values: list[Any]) -> str:
    """One series' identity as stored: its key values as a compact JSON list (dates as ISO text, as actuals
    carry them)."""
    return json.dumps(values, separators=(",", ":"), default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a series key value")


@dataclass(frozen=True)
class StoredActuals:
    """What `add_actuals` did: actuals now in the history (by series and time, or by a request id whose
    prediction was noted), and actuals by request id waiting for their prediction's note."""

    stored: int
    waiting: int


def seconds(times: Any) -> np.ndarray:
    """Times as the time column holds them (dates, datetimes, ISO text, whole years) -> int64 seconds (n,)."""
    return as_time(np.asarray(times)).astype(np.int64)


class HistoryStore:
    """The actuals of each series, in an SQLite file (`path`), for a project whose releases read history.

    `series`, `time`, `target`: the project's series key columns, time column and target.
    """

    def __init__(self, path: Path, series: list[str], time: str, target: str, keep_seconds: int,
                 columns: list[str] | None = None) -> None:
        """`keep_seconds`: how long a live prediction's note is kept for its actuals by request id.
        `columns`: the covariates whose past values are kept too."""
        self.path = Path(path)
        self.series, self.time, self.target = list(series), time, target
        self.columns = list(columns or [])
        self.keep_seconds = keep_seconds
        # Writes go through one connection, reads (a request's version check) through another: in WAL mode a
        # read never waits for a write's commit (or a checkpoint's fsync) in progress.
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_db: sqlite3.Connection | None = None
        self._notes: collections.deque[tuple[str, str]] = collections.deque()  # (request id, its records' JSON)
        self._noter: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen: int | None = None  # the reading connection's data_version when _changes was read
        self._changes = 0

    @classmethod
    def for_project(cls, project: Project) -> HistoryStore | None:
        """The project's store (`.cd4ml/history/<model name>.sqlite`, made at its first use); None unless the
        project forecasts series (`forecast:`). Kept whether or not the project's features read it now: a
        service started on a release without history features stores the actuals the next release reads."""
        cfg = project.config
        if cfg.forecast is None:
            return None
        path = project.state_dir / "history" / f"{cfg.registry.model_name}.sqlite"
        spec, step = cfg.history_spec, cfg.forecast.step
        steps = (spec.lookback if spec is not None else 0) + cfg.forecast.horizon
        keep = max(steps * step.count * _UNIT_SECONDS[step.unit], 60 * 86_400)
        covariates = cfg.features.history.columns if cfg.features.history is not None else []
        return cls(path, cfg.forecast.series, cfg.time_column, cfg.target, keep, covariates)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _reader(self) -> sqlite3.Connection:
        """The reading connection (hold `_read_lock`)."""
        if self._read_db is None:
            with self._lock:
                self._conn()  # the file and its tables exist
            self._read_db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        return self._read_db

    def start(self) -> None:
        """Write the served records' notes in the background (a service's store)."""
        if self._noter is None:
            self._stop.clear()
            self._noter = threading.Thread(target=self._note_loop, name="cd4ml-history-notes", daemon=True)
            self._noter.start()

    def close(self) -> None:
        """Stop the background writer (its last notes written) and close the file."""
        if self._noter is not None:
            self._stop.set()
            self._noter.join()
            self._noter = None
        if self._notes:
            self._write(lambda db: 0)
        for db in (self._db, self._read_db):
            if db is not None:
                db.close()
        self._db = self._read_db = None

    def _note_loop(self) -> None:
        while not self._stop.wait(NOTE_SECONDS):
            if self._notes:
                try:
                    self._write(lambda db: 0)
                except Exception:  # a locked or full disk: kept queued, tried again
                    log.exception("could not write the served records' notes to %s", self.path)

    def _write(self, body: Callable[[sqlite3.Connection], int]) -> int:
        """One write transaction: the queued notes of live predictions, then `body` (which returns how many
        history rows it changed); actuals waiting for those notes are stored, notes and waits too old to
        matter are dropped."""
        with self._lock:
            now = int(time.time())
            taken = [self._notes.popleft() for _ in range(len(self._notes))]
            notes = [(request_id, now, records) for request_id, records in taken]
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO served VALUES (?, ?, ?)", notes)
                changed = body(db) + self._resolve(db)
                db.execute("DELETE FROM waiting WHERE received < ?", [now - WAIT_SECONDS])
                db.execute("DELETE FROM served WHERE noted < ?", [now - self.keep_seconds])
                if changed:
                    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'history_changes'")
                crash_point("history.before_commit")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._notes.extendleft(reversed(taken))  # written with the next transaction
                raise
            return changed

    def _resolve(self, db: sqlite3.Connection) -> int:
        """Store the waiting actuals whose prediction is noted, under its record's series and time (and the
        record's covariates); returns the history rows changed. A record index the request did not have
        keeps its actual waiting, to expire."""
        found = db.execute(_WAITING_NOTED).fetchall()
        if not found:
            return 0
        targets, inputs, done = [], [], []
        parsed: dict[str, list[dict[str, Any]]] = {}
        for request_id, record, value, records in found:
            try:
                rows = parsed.setdefault(request_id, orjson.loads(records))
                row = rows[record] if 0 <= record < len(rows) else None
                if row is None:
                    continue
                series, t = series_key([row.get(c) for c in self.series]), int(seconds([row.get(self.time)])[0])
            except (ValueError, TypeError, AttributeError) as exc:  # a note not as written (edited by hand?)
                log.warning("request %s, record %s: its note cannot be read, the actual waits to expire: %s",
                            request_id, record, exc)
                continue
            targets.append((series, t, value))
            inputs += [(series, c, t, float(row[c])) for c in self.columns if row.get(c) is not None]
            done.append((request_id, record))
        db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?)", targets)
        db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)", inputs)
        db.executemany("DELETE FROM waiting WHERE request_id = ? AND record = ?", done)
        return len(targets) + len(inputs)

    def note_served(self, request_id: str, rows: list[dict[str, Any]]) -> None:
        """Remember a live prediction's records (validated inputs), for its actuals by request id: one JSON text
        per request, made here (microseconds), written within `NOTE_SECONDS` by the background writer; read for
        a record's series, time and covariates only when its actual arrives."""
        try:
            self._notes.append((request_id, orjson.dumps(rows).decode()))
        except TypeError as exc:  # no validated value is unwritable; if one were, the answer still goes out
            log.warning("request %s: its records could not be noted: %s", request_id, exc)

    def seed(self, rows: Mapping[str, np.ndarray]) -> int:
        """Add rows known to be true (series columns, time, target): a release's packaged history, the rows a
        `data refresh` adds to the table. A value already stored is kept (actuals fed back since are as true,
        and may be newer); returns the rows added."""
        n = len(rows[self.time])
        if not n:
            return 0
        keys = [np.asarray(rows[c]).tolist() for c in self.series]
        series = [series_key([k[i] for k in keys]) for i in range(n)] if keys else [series_key([])] * n
        t = seconds(rows[self.time]).tolist()
        values = np.asarray(rows[self.target], dtype=np.float64)
        added = [row for row, known in zip(zip(series, t, values.tolist()), ~np.isnan(values)) if known]
        inputs = []
        for c in self.columns:
            if c in rows:
                column = np.asarray(rows[c], dtype=np.float64)
                inputs += [(k, c, ti, v) for k, ti, v, known in zip(series, t, column.tolist(), ~np.isnan(column))
                           if known]

        def store(db: sqlite3.Connection) -> int:
            added_inputs = db.executemany("INSERT OR IGNORE INTO inputs VALUES (?, ?, ?, ?)", inputs).rowcount
            return db.executemany("INSERT OR IGNORE INTO history VALUES (?, ?, ?)", added).rowcount + added_inputs

        return self._write(store)

    def add_actuals(self, events: list[dict[str, Any]]) -> StoredActuals:
        """Store the actuals events' targets: by the key columns under their series and time, by request id
        (+ record) under the noted series and time of that prediction's record (or waiting for the note). An
        actual for a series and time already stored replaces it."""
        keyed, by_request, inputs = [], [], []
        received = int(time.time())
        for event in events:
            value = event.get("values", {}).get(self.target)
            if value is None:
                continue
            keys = event.get("keys")
            if keys is not None:
                t = int(seconds([keys[self.time]])[0])
                series = series_key([keys[c] for c in self.series])
                keyed.append((series, t, float(value)))
                inputs += [(series, c, t, float(v)) for c in self.columns
                           if (v := event["values"].get(c)) is not None]
            else:
                by_request.append((event["request_id"], int(event.get("record") or 0), float(value), received))
        if not keyed and not by_request:
            return StoredActuals(0, 0)

        def store(db: sqlite3.Connection) -> int:
            db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?)", keyed)
            db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)", inputs)
            db.executemany("INSERT OR REPLACE INTO waiting VALUES (?, ?, ?, ?)", by_request)
            return len(keyed) + len(inputs)

        self._write(store)
        waiting = self._waiting([(r, i) for r, i, _, _ in by_request])
        return StoredActuals(len(keyed) + len(by_request) - waiting, waiting)

    def _waiting(self, ids: list[tuple[str, int]]) -> int:
        """How many of `ids` (request id, record) still wait for their prediction's note."""
        if not ids:
            return 0
        with self._read_lock:
            db = self._reader()
            return sum(db.execute("SELECT COUNT(*) FROM waiting WHERE request_id = ? AND record = ?", k).fetchone()[0]
                       for k in ids)

    def version(self) -> int:
        """Changes whenever the stored history may have (a count of its changing writes, by any process).
        Other tables' writes (notes, waits) leave it as it is, and a reader's index of the history with it."""
        with self._read_lock:
            db = self._reader()
            (data_version,) = db.execute("PRAGMA data_version").fetchone()
            if data_version != self._seen:  # another connection committed since the count was read: read it again
                (self._changes,) = db.execute("SELECT value FROM meta WHERE key = 'history_changes'").fetchone()
                self._seen = data_version
            return self._changes

    def latest(self) -> np.datetime64 | None:
        """The latest time any series has an actual for (datetime64[s]), None while the store is empty."""
        with self._read_lock:
            (t,) = self._reader().execute("SELECT MAX(t) FROM history").fetchone()
        return None if t is None else np.datetime64(int(t), "s")

    def rows_since(self, spec: HistorySpec, cutoff: np.datetime64) -> dict[str, np.ndarray]:
        """Every stored row (series columns, time as datetime64[s], target, covariates; NaN where a series and
        time has no value of one) that a forecast for a time after `cutoff` may read: from `spec.lookback`
        steps before it on. A service indexes them once and reads them again when the store changes (`version`)."""
        since = int(seconds([cutoff])[0]) - (spec.lookback + 1) * spec.count * _UNIT_SECONDS[spec.unit]
        with self._read_lock:
            db = self._reader()
            db.execute("BEGIN")  # one snapshot for both tables
            try:
                targets = db.execute("SELECT series, t, value FROM history WHERE t >= ?", [since]).fetchall()
                inputs = db.execute("SELECT series, t, name, value FROM inputs WHERE t >= ?", [since]).fetchall() \
                    if spec.columns else []
            finally:
                db.execute("COMMIT")
        rows: dict[tuple[str, int], int] = {(s, t): i for i, (s, t, _) in enumerate(targets)}
        for s, t, _, _ in inputs:
            rows.setdefault((s, t), len(rows))
        values = {c: np.full(len(rows), np.nan) for c in spec.values}
        values[spec.target][:len(targets)] = [v for _, _, v in targets]
        for s, t, name, v in inputs:
            if name in values:
                values[name][rows[(s, t)]] = v
        parsed = {s: json.loads(s) for s, _ in rows}
        out: dict[str, np.ndarray] = {}
        for j, c in enumerate(self.series):
            out[c] = np.asarray([parsed[s][j] for s, _ in rows])
        out[self.time] = np.array([t for _, t in rows], dtype=np.int64).astype("datetime64[s]")
        return {**out, **values}


def unforecastable(spec: HistorySpec, cutoff: np.datetime64 | None, latest: np.datetime64 | None,
                   times: Any) -> dict[int, str]:
    """The rows (index -> why) of `times` a release with history cut-off `cutoff` cannot forecast honestly
    when the store's latest actual is at `latest`: times not after the cut-off, and times more than
    `spec.horizon` steps after the latest actual."""
    t = as_time(np.asarray(times))
    steps = time_steps(t, spec.count, spec.unit)
    out: dict[int, str] = {}
    if cutoff is not None:
        first = int(time_steps(np.asarray([cutoff]), spec.count, spec.unit)[0])
        for i in np.flatnonzero(steps <= first).tolist():
            out[i] = (f"{t[i]} is not after the release's history cut-off {cutoff}: its history features are "
                      "read from there on")
    if latest is not None:
        last = int(time_steps(np.asarray([latest]), spec.count, spec.unit)[0])
        for i in np.flatnonzero(steps > last + spec.horizon).tolist():
            out.setdefault(i, f"{t[i]} is more than the horizon of {spec.horizon} step(s) of {spec.count}{spec.unit} "
                              f"after the latest actual stored ({latest}): send the later actuals first")
    return out
