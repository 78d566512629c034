"""The online history store: each series' actuals, as a service reads them for history features.

A release packages its series' latest values (`package.history_tail`); from then on actuals arrive
through `POST /feedback` and `cd4ml feedback` by the key columns (series and time) and are stored
here, so tomorrow's forecast reads today's actual. The store is one SQLite file per model under the
project's `.cd4ml/history/`, in WAL mode: a service's workers read it while another process writes,
and a restart loses nothing. A row is one series at one time (seconds since 1970, as
`transforms.as_time` reads the time column) with its target value; an actual sent again replaces
the stored one, so actuals arriving twice or out of order leave one row per series and time.

A forecast is asked for a time after the release's history cut-off (the latest time it packaged) and
at most `forecast.horizon` steps after the latest actual stored (`unforecastable`): anything else
would read history the service does not have, and is answered 422 (or, with
`serving.stale_history: fallback`, predicted from what there is and flagged).

`HistoryStore` is the interface a server database could implement later: `seed`, `add_actuals`,
`latest`, `version`, `rows_since`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cd4ml.config import Project
from cd4ml.faults import crash_point
from cd4ml.features.transforms import HistorySpec, as_time, time_steps

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
"""


def series_key(values: list[Any]) -> str:
    """One series' identity as stored: its key values (JSON scalars) as a compact JSON list."""
    return json.dumps(values, separators=(",", ":"))


def seconds(times: Any) -> np.ndarray:
    """Times as the time column holds them (dates, datetimes, ISO text, whole years) -> int64 seconds (n,)."""
    return as_time(np.asarray(times)).astype(np.int64)


class HistoryStore:
    """The actuals of each series, in an SQLite file (`path`), for a project whose releases read history.

    `series`, `time`, `target`: the project's series key columns, time column and target.
    """

    def __init__(self, path: Path, series: list[str], time: str, target: str) -> None:
        self.path = Path(path)
        self.series, self.time, self.target = list(series), time, target
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @classmethod
    def for_project(cls, project: Project) -> HistoryStore | None:
        """The project's store (`.cd4ml/history/<model name>.sqlite`, made at its first use); None unless the
        project forecasts series (`forecast:`). Kept whether or not the project's features read it now: a
        service started on a release without history features stores the actuals the next release reads."""
        cfg = project.config
        if cfg.forecast is None:
            return None
        path = project.state_dir / "history" / f"{cfg.registry.model_name}.sqlite"
        return cls(path, cfg.forecast.series, cfg.time_column, cfg.target)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _write(self, sql: str, rows: list[tuple[str, int, float]]) -> int:
        with self._lock:
            db = self._conn()
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
                crash_point("history.before_commit")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db.total_changes - before

    def seed(self, rows: Mapping[str, np.ndarray]) -> int:
        """Add a release's packaged history (series columns, time, target), keeping any value already stored
        (actuals fed back since are as true, and may be newer); returns the rows added."""
        n = len(rows[self.time])
        if not n:
            return 0
        keys = [np.asarray(rows[c]).tolist() for c in self.series]
        series = [series_key([k[i] for k in keys]) for i in range(n)] if keys else [series_key([])] * n
        t = seconds(rows[self.time]).tolist()
        values = np.asarray(rows[self.target], dtype=np.float64).tolist()
        return self._write("INSERT OR IGNORE INTO history VALUES (?, ?, ?)", list(zip(series, t, values)))

    def add_actuals(self, events: list[dict[str, Any]]) -> int:
        """Store the actuals events that name their series and time (by the key columns); an actual for a
        series and time already stored replaces it. Returns how many events were stored."""
        rows = []
        for event in events:
            keys, value = event.get("keys"), event.get("values", {}).get(self.target)
            if keys is None or value is None:  # by request id: its series is in the prediction log only
                continue
            t = int(seconds([keys[self.time]])[0])
            rows.append((series_key([keys[c] for c in self.series]), t, float(value)))
        if rows:
            self._write("INSERT OR REPLACE INTO history VALUES (?, ?, ?)", rows)
        return len(rows)

    def version(self) -> tuple[int, int]:
        """Changes whenever the stored rows may have: another connection's commits (SQLite's `data_version`)
        or this one's (its change count)."""
        with self._lock:
            db = self._conn()
            (data_version,) = db.execute("PRAGMA data_version").fetchone()
            return int(data_version), db.total_changes

    def latest(self) -> np.datetime64 | None:
        """The latest time any series has an actual for (datetime64[s]), None while the store is empty."""
        with self._lock:
            (t,) = self._conn().execute("SELECT MAX(t) FROM history").fetchone()
        return None if t is None else np.datetime64(int(t), "s")

    def rows_since(self, spec: HistorySpec, cutoff: np.datetime64) -> dict[str, np.ndarray]:
        """Every stored row (series columns, time as datetime64[s], target) that a forecast for a time after
        `cutoff` may read: from `spec.lookback` steps before it on. A service indexes them once and reads
        them again when the store changes (`version`)."""
        since = int(seconds([cutoff])[0]) - (spec.lookback + 1) * spec.count * _UNIT_SECONDS[spec.unit]
        with self._lock:
            found = self._conn().execute("SELECT series, t, value FROM history WHERE t >= ?", [since]).fetchall()
        parsed = {s: json.loads(s) for s in {row[0] for row in found}}
        out: dict[str, np.ndarray] = {}
        for j, c in enumerate(self.series):
            column = [parsed[row[0]][j] for row in found]
            out[c] = np.asarray(column)
        out[self.time] = np.array([row[1] for row in found], dtype=np.int64).astype("datetime64[s]")
        out[self.target] = np.array([row[2] for row in found], dtype=np.float64)
        return out


def unforecastable(spec: HistorySpec, cutoff: np.datetime64 | None, latest: np.datetime64 | None,
                   times: list[Any]) -> dict[int, str]:
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
