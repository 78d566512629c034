"""Production rows from the prediction store, joined with their actuals (DuckDB).

Joining rules (each actual is counted once, whatever arrives):

- An actual's identity is its (request_id, record), or its key columns. The first one
  received per identity is used; later ones are `duplicate` (not double-counted).
- By request it matches that record's prediction; by keys it matches every prediction of
  those keys. Of the matches, the latest prediction of each model version is scored, so a
  key predicted twice by one version counts once for it, and once for another version.
- An actual matching no stored prediction is `unknown` (it may match after the next
  compaction); one received more than `monitoring.late_after_days` after its last matched
  prediction is `late` (still scored).
- By keys, a counted prediction is scored before test traffic or one dated out of range.

What counts: predictions of live traffic (not `X-Cd4ml-Traffic: test`) whose date is within
`monitoring.plausible_days` of the usual distance between a prediction's date and the day it
was served. The others are counted in `excluded` and never reach a window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import ProjectConfig
from cd4ml.task import Classification

_EPOCH = dt.date(1970, 1, 5)  # a Monday: windows of 7 days are Monday..Sunday weeks
_EXAMPLES = 5  # out-of-range days named in a report


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Window:
    """A calendar window of the time column, both ends included."""

    start: dt.date
    end: dt.date


def _day(number: int) -> dt.date:
    # Clamped: with the range check off, a day such as 9999-12-31 can bound a window.
    return dt.date.fromordinal(min(max(number, 1), dt.date.max.toordinal()))


def calendar_window(index: int, size: int) -> Window:
    """Window `index` of `size` days counted from Monday 1970-01-05 (its bounds depend on the calendar only)."""
    first = _EPOCH.toordinal() + index * size
    return Window(_day(first), _day(first + size - 1))


def window_index(day: dt.date, size: int) -> int:
    return (day.toordinal() - _EPOCH.toordinal()) // size


@dataclass(frozen=True)
class TrafficRow:
    """One day's predictions by one model version: `predictions` (records), `requests`, `fallback`
    (records answered for inputs the release never saw) and the request latency p50/p99 in milliseconds."""

    day: dt.date
    model_version: str
    predictions: int
    requests: int
    fallback: int
    latency_p50_ms: float
    latency_p99_ms: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass
class Excluded:
    """Stored predictions kept out of the windows: marked as test traffic, or dated out of range."""

    test: int = 0
    out_of_range: int = 0
    out_of_range_days: list[str] = field(default_factory=list)  # the furthest few, ISO dates
    plausible_days: int | None = None


class LiveData:
    """The stored predictions of the report's windows, each with its matched actual (or none).

    `frame`: one row per live prediction in the calendar windows (by the time column),
    ordered by serving time, with columns `request_id`, `record`, `served_at`,
    `model_version`, `prediction` (a classifier's: the answered label), `probabilities` (a
    classifier's only: an array per row), `fallback`, `latency_ms`, `day` (date), the request
    inputs, and `actual_<column>` for every non-input schema column an actual may carry
    (NaN/None where no actual is matched). Test traffic and predictions dated out of range
    (see `Excluded`) are counted in `excluded`, never in `frame`. `windows`: the calendar
    windows the frame covers, oldest first (empty without live predictions).
    """

    def __init__(self, cfg: ProjectConfig, predictions: Any, actuals: Any, *, windows: int | None) -> None:
        """`predictions`, `actuals`: pyarrow datasets of the prediction store, or None when empty;
        `windows`: how many calendar windows of `monitoring.window_days` (None: every day)."""
        import duckdb

        self.cfg = cfg
        self.value_columns = [c for c in cfg.schema_.columns if c not in set(cfg.input_columns)]
        self.counts = {"received": 0, "matched": 0, "duplicate": 0, "unknown": 0, "late": 0}
        self.excluded = Excluded(plausible_days=cfg.monitoring.plausible_days)
        self.windows: list[Window] = []
        if predictions is None:
            probabilities = ["probabilities"] if isinstance(cfg.task, Classification) else []
            self.frame = pd.DataFrame(columns=["request_id", "record", "served_at", "model_version", "prediction",
                                               *probabilities, "fallback", "latency_ms", "day", *cfg.input_columns,
                                               *[f"actual_{c}" for c in self.value_columns]])
            if actuals is not None:
                self.counts["received"] = self.counts["unknown"] = actuals.count_rows()
            return
        con = duckdb.connect()
        con.register("p_store", predictions)
        self._flag(con, "traffic" in predictions.schema.names)
        period = self._period(con, windows)
        values = ", ".join(f"NULL::VARCHAR AS {_q('actual_' + c)}" for c in self.value_columns)
        if actuals is not None and actuals.count_rows():
            con.register("a_store", actuals)
            self._match(con)
            values = ", ".join(f"b.\"values\".{_q(c)} AS {_q('actual_' + c)}" for c in self.value_columns)
            joined = f"SELECT pr.*, {values} FROM pr LEFT JOIN best b USING (pid) {period} ORDER BY pid"
        else:
            joined = f"SELECT pr.*, {values} FROM pr {period} ORDER BY pid"
        table = con.sql(joined).to_arrow_table()
        flat = table.drop_columns(["inputs", "pid", "traffic", "lead", "counted"])
        inputs = table.column("inputs").combine_chunks()
        for i, field_ in enumerate(inputs.type):
            flat = flat.append_column(field_.name, inputs.field(i))
        self.frame = flat.to_pandas(date_as_object=False)
        con.close()

    def _flag(self, con: Any, has_traffic: bool) -> None:
        """Table `pr`: every stored prediction with `counted` (live and in range) and `lead`, its day minus
        the day it was served. Out of range: a lead further than `plausible_days` from the median lead."""
        cfg = self.cfg
        time = f"inputs.{_q(cfg.time_column)}"
        # An int time column holds years: a year's day is its 1 January.
        day = f"make_date(CAST({time} AS BIGINT), 1, 1)" if cfg.schema_.columns[cfg.time_column].type == "int" \
            else f"CAST({time} AS DATE)"
        # Lines logged before the traffic field existed are live traffic.
        traffic = "* REPLACE (coalesce(traffic, 'live') AS traffic)" if has_traffic else "*, 'live' AS traffic"
        con.execute(f"""CREATE TEMP TABLE flagged AS
            SELECT row_number() OVER (ORDER BY served_at, request_id, record) - 1 AS pid, {traffic}, {day} AS day,
                   date_diff('day', DATE '1970-01-01', {day}) - floor(epoch(served_at) / 86400)::BIGINT AS lead
            FROM p_store""")
        typical = con.execute("SELECT quantile_disc(lead, 0.5) FROM flagged WHERE traffic = 'live'").fetchall()[0][0]
        limit = cfg.monitoring.plausible_days
        in_range = f"abs(lead - {int(typical)}) <= {int(limit)}" if limit and typical is not None else "TRUE"
        con.execute(f"CREATE TEMP TABLE pr AS SELECT *, traffic = 'live' AND {in_range} AS counted FROM flagged")
        test, out = con.execute("SELECT count(*) FILTER (traffic <> 'live'), "
                                "count(*) FILTER (traffic = 'live' AND NOT counted) FROM pr").fetchall()[0]
        self.excluded.test, self.excluded.out_of_range = int(test), int(out)
        if out:
            far = con.execute(f"SELECT day FROM pr WHERE traffic = 'live' AND NOT counted GROUP BY day "
                              f"ORDER BY max(abs(lead - {int(typical)})) DESC, day LIMIT {_EXAMPLES}").fetchall()
            self.excluded.out_of_range_days = [d.isoformat() for (d,) in far]

    def _period(self, con: Any, windows: int | None) -> str:
        """The WHERE clause of the frame (every counted row for None), and `self.windows`.

        The report ends at the latest window with `monitoring.drift.min_rows` counted rows (else the
        latest with any) and covers the `windows` before it, plus any later windows: those hold too
        few rows to be judged, so a stray record dated ahead shows up without moving the report.
        """
        if windows is None:
            return "WHERE pr.counted"
        cfg = self.cfg
        size, need = cfg.monitoring.window_days, cfg.monitoring.drift.min_rows
        start = f"DATE '{_EPOCH.isoformat()}'"
        rows = dict(con.execute(f"SELECT floor(date_diff('day', {start}, day) / {size})::BIGINT AS w, count(*) "
                                f"FROM pr WHERE counted GROUP BY w").fetchall())
        if not rows:
            return "WHERE FALSE"
        anchor = max((w for w, n in rows.items() if n >= need), default=max(rows))
        first = anchor - windows + 1
        self.windows = [calendar_window(w, size) for w in
                        [*range(first, anchor + 1), *sorted(w for w in rows if w > anchor)]]
        return f"WHERE pr.counted AND pr.day >= DATE '{calendar_window(first, size).start.isoformat()}'"

    def _match(self, con: Any) -> None:
        cfg = self.cfg
        keys = list(cfg.schema_.keys)
        ident = ("CASE WHEN request_id IS NOT NULL THEN 'r:' || request_id || '#' || CAST(record AS VARCHAR) "
                 + ("ELSE 'k:' || CAST(to_json(keys) AS VARCHAR) END" if keys else "END"))
        con.execute(f"""CREATE TEMP TABLE a_ranked AS
            SELECT *, row_number() OVER (PARTITION BY ident ORDER BY received_at, source) AS nth
            FROM (SELECT *, {ident} AS ident FROM a_store)""")
        on_keys = " AND ".join(f"pr.inputs.{_q(k)} = a.keys.{_q(k)}" for k in keys) or "FALSE"
        con.execute(f"""CREATE TEMP TABLE matched AS
            SELECT a.ident, a.received_at, a."values", pr.pid, pr.model_version, pr.served_at, pr.counted
            FROM a_ranked a JOIN pr ON a.request_id = pr.request_id AND a.record = pr.record WHERE a.nth = 1
            UNION ALL
            SELECT a.ident, a.received_at, a."values", pr.pid, pr.model_version, pr.served_at, pr.counted
            FROM a_ranked a JOIN pr ON {on_keys} WHERE a.nth = 1 AND a.request_id IS NULL""")
        con.execute("""CREATE TEMP TABLE best AS SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY ident, model_version
                                         ORDER BY counted DESC, served_at DESC, pid DESC) AS r
            FROM matched) WHERE r = 1""")
        late = dt.timedelta(days=cfg.monitoring.late_after_days)
        received, duplicate = con.execute("SELECT count(*), count(*) FILTER (nth > 1) FROM a_ranked").fetchall()[0]
        matched, n_late = con.execute(
            "SELECT count(*), count(*) FILTER (received_at > last_served + ?) FROM "
            "(SELECT ident, any_value(received_at) AS received_at, max(served_at) AS last_served "
            "FROM matched GROUP BY ident)", [late]).fetchall()[0]
        self.counts = {"received": int(received), "matched": int(matched), "duplicate": int(duplicate),
                       "unknown": int(received - duplicate - matched), "late": int(n_late)}

    @property
    def has_actual(self) -> np.ndarray:
        """Rows whose prediction is scored against an actual, (n,) bool."""
        return self.frame[f"actual_{self.cfg.target}"].notna().to_numpy()

    def traffic(self) -> list[TrafficRow]:
        """Per day x model version: predictions, requests, fallbacks, request latency p50/p99 (ms)."""
        f = self.frame
        if f.empty:
            return []
        rows = []
        for (day, version), g in f.groupby(["day", "model_version"], sort=True):
            per_request = g.drop_duplicates("request_id")["latency_ms"].to_numpy()
            rows.append(TrafficRow(pd.Timestamp(day).date(), str(version), int(len(g)), int(len(per_request)),
                                   int(g["fallback"].sum()), float(np.percentile(per_request, 50)),
                                   float(np.percentile(per_request, 99))))
        return rows


def with_attributes(cfg: ProjectConfig, release: Any, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every column the release derives for the rows of a `LiveData` frame: the inputs, and lookup
    attributes as the actual carried them, else from the release's own tables (missing for keys
    the release does not know, e.g. a store that opened after it was trained). Arrays of shape (n,).
    """
    from cd4ml.release.package import frame_to_batch

    batch = frame_to_batch(frame, cfg.input_columns)
    out = dict(release.plan.derive(batch)) if release is not None else batch
    for lookup in cfg.features.lookups:
        for c in lookup.columns:
            given = frame.get(f"actual_{c}")
            if given is None or not given.notna().any():
                continue
            carried = given.notna().to_numpy()
            if carried.all() or c not in out:
                out[c] = given.to_numpy()
            else:
                out[c] = np.where(carried, given.to_numpy(dtype=object), out[c].astype(object))
    return out
