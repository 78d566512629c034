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
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import ProjectConfig


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class LiveData:
    """The stored predictions of the report's period, each with its matched actual (or none).

    `frame`: one row per stored prediction of the last `days` days (by the time column),
    ordered by serving time, with columns `request_id`, `record`, `served_at`,
    `model_version`, `prediction`, `fallback`, `latency_ms`, `day` (date), the request
    inputs, and `actual_<column>` for every non-input schema column an actual may carry
    (NaN/None where no actual is matched).
    """

    def __init__(self, cfg: ProjectConfig, predictions: Any, actuals: Any, *, days: int) -> None:
        """`predictions`, `actuals`: pyarrow datasets of the prediction store, or None when empty."""
        import duckdb

        self.cfg = cfg
        self.value_columns = [c for c in cfg.schema_.columns if c not in set(cfg.input_columns)]
        self.counts = {"received": 0, "matched": 0, "duplicate": 0, "unknown": 0, "late": 0}
        if predictions is None:
            self.frame = pd.DataFrame(columns=["request_id", "record", "served_at", "model_version", "prediction",
                                               "fallback", "latency_ms", "day", *cfg.input_columns,
                                               *[f"actual_{c}" for c in self.value_columns]])
            if actuals is not None:
                self.counts["received"] = self.counts["unknown"] = actuals.count_rows()
            return
        con = duckdb.connect()
        con.register("p_store", predictions)
        time = f"inputs.{_q(cfg.time_column)}"
        # An int time column holds years: a year's day is its 1 January.
        day = f"make_date(CAST({time} AS BIGINT), 1, 1)" if cfg.schema_.columns[cfg.time_column].type == "int" \
            else f"CAST({time} AS DATE)"
        con.execute(f"""CREATE TEMP TABLE pr AS
            SELECT row_number() OVER (ORDER BY served_at, request_id, record) - 1 AS pid, *, {day} AS day
            FROM p_store""")
        # Actuals match against every stored prediction; the frame keeps the report's period only.
        period = f"WHERE day > (SELECT max(day) FROM pr) - INTERVAL {int(days)} DAY"
        values = ", ".join(f"NULL::VARCHAR AS {_q('actual_' + c)}" for c in self.value_columns)
        if actuals is not None and actuals.count_rows():
            con.register("a_store", actuals)
            self._match(con)
            values = ", ".join(f"b.\"values\".{_q(c)} AS {_q('actual_' + c)}" for c in self.value_columns)
            joined = f"SELECT pr.*, {values} FROM pr LEFT JOIN best b USING (pid) {period} ORDER BY pid"
        else:
            joined = f"SELECT pr.*, {values} FROM pr {period} ORDER BY pid"
        table = con.sql(joined).to_arrow_table()
        flat = table.drop_columns(["inputs"])
        inputs = table.column("inputs").combine_chunks()
        for i, field in enumerate(inputs.type):
            flat = flat.append_column(field.name, inputs.field(i))
        self.frame = flat.drop_columns(["pid"]).to_pandas(date_as_object=False)
        con.close()

    def _match(self, con: Any) -> None:
        cfg = self.cfg
        keys = list(cfg.schema_.keys)
        ident = ("CASE WHEN request_id IS NOT NULL THEN 'r:' || request_id || '#' || CAST(record AS VARCHAR) "
                 "ELSE 'k:' || CAST(to_json(keys) AS VARCHAR) END")
        con.execute(f"""CREATE TEMP TABLE a_ranked AS
            SELECT *, row_number() OVER (PARTITION BY ident ORDER BY received_at, source) AS nth
            FROM (SELECT *, {ident} AS ident FROM a_store)""")
        on_keys = " AND ".join(f"pr.inputs.{_q(k)} = a.keys.{_q(k)}" for k in keys) or "FALSE"
        con.execute(f"""CREATE TEMP TABLE matched AS
            SELECT a.ident, a.received_at, a."values", pr.pid, pr.model_version, pr.served_at
            FROM a_ranked a JOIN pr ON a.request_id = pr.request_id AND a.record = pr.record WHERE a.nth = 1
            UNION ALL
            SELECT a.ident, a.received_at, a."values", pr.pid, pr.model_version, pr.served_at
            FROM a_ranked a JOIN pr ON {on_keys} WHERE a.nth = 1 AND a.request_id IS NULL""")
        con.execute("""CREATE TEMP TABLE best AS SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY ident, model_version ORDER BY served_at DESC, pid DESC) AS r
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

    def traffic(self) -> list[dict[str, Any]]:
        """Per day x model version: predictions, requests, fallbacks, request latency p50/p99 (ms)."""
        f = self.frame
        if f.empty:
            return []
        rows = []
        for (day, version), g in f.groupby(["day", "model_version"], sort=True):
            per_request = g.drop_duplicates("request_id")["latency_ms"].to_numpy()
            rows.append({"day": pd.Timestamp(day).date().isoformat(), "model_version": str(version),
                         "predictions": int(len(g)), "requests": int(len(per_request)),
                         "fallback": int(g["fallback"].sum()),
                         "latency_p50_ms": float(np.percentile(per_request, 50)),
                         "latency_p99_ms": float(np.percentile(per_request, 99))})
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
