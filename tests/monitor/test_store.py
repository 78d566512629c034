"""The prediction store over real log files, real Delta tables and a real service on loopback."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from cd4ml.config import load_project
from cd4ml.errors import DataRejected
from cd4ml.monitor.store import PredictionStore
from cd4ml.serve.predlog import PredictionLog
from helpers import Service, edit_yaml

NOW = "2026-11-26T14:00:00.123456+00:00"


def _event(request_id: str, record: int = 0, **changes: object) -> dict:
    """A prediction event as the service writes it."""
    event = {"request_id": request_id, "record": record, "time": NOW, "model_version": "1",
             "inputs": {"date": "2024-08-01", "store_nbr": 2, "item_nbr": 100007, "onpromotion": 1},
             "output": 3.25, "fallback": False, "latency_ms": 0.8}
    return {**event, **changes}


def _actual(**changes: object) -> dict:
    event = {"received_at": NOW, "request_id": None, "record": None,
             "keys": {"date": "2024-08-01", "store_nbr": 2, "item_nbr": 100007},
             "values": {"unit_sales": 4.0, "expected_sales": 3.5}, "source": "http"}
    return {**event, **changes}


def _write(shop: Path, events: list[dict], prefix: str = "predictions") -> PredictionLog:
    project = load_project(shop)
    log = PredictionLog(project.resolve(project.config.serving.log_dir), prefix=prefix)
    log.emit_many(events)
    log.close()
    return log


def _stored(store: PredictionStore) -> list[tuple[str, int]]:
    return [(r["request_id"], r["record"]) for r in store.predictions().to_table(
        columns=["request_id", "record"]).to_pylist()]


def test_compaction_types_and_values(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    assert store.predictions() is None and store.actuals() is None
    assert store.compact().predictions == 0 and not store.predictions_path.exists()

    inputs = {"date": "2024-08-02", "store_nbr": "3", "item_nbr": 100001}  # lax "3" as the service accepts it
    _write(shop, [_event("a", 0), _event("b", 4, inputs=inputs, output=None, fallback=True)])
    result = store.compact()
    assert (result.predictions, result.actuals, result.files, result.bad) == (2, 0, 1, 0)

    table = store.predictions().to_table()
    assert table.schema.remove_metadata() == pa.schema([
        pa.field("request_id", pa.string(), nullable=False), pa.field("record", pa.int32(), nullable=False),
        pa.field("served_at", pa.timestamp("us", tz="UTC"), nullable=False), ("model_version", pa.string()),
        ("prediction", pa.float64()), ("fallback", pa.bool_()), ("latency_ms", pa.float64()),
        pa.field("inputs", pa.struct([("date", pa.date32()), ("store_nbr", pa.int64()), ("item_nbr", pa.int64()),
                                      ("onpromotion", pa.int64())]), nullable=False), ("traffic", pa.string())])
    rows = sorted(table.to_pylist(), key=lambda r: r["request_id"])
    assert rows[0] == {"request_id": "a", "record": 0, "model_version": "1", "prediction": 3.25, "fallback": False,
                       "served_at": dt.datetime(2026, 11, 26, 14, 0, 0, 123456, tzinfo=dt.timezone.utc),
                       "latency_ms": 0.8, "inputs": {"date": dt.date(2024, 8, 1), "store_nbr": 2,
                                                     "item_nbr": 100007, "onpromotion": 1}, "traffic": None}
    assert rows[1]["inputs"] == {"date": dt.date(2024, 8, 2), "store_nbr": 3, "item_nbr": 100001, "onpromotion": None}
    assert (rows[1]["record"], rows[1]["prediction"], rows[1]["fallback"]) == (4, None, True)


def test_compaction_is_incremental_and_idempotent(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    _write(shop, [_event("a", i) for i in range(3)])
    assert store.compact().predictions == 3
    version = DeltaTable(str(store.predictions_path)).version()
    assert store.compact() == store.compact()  # nothing new: no rows, no files, no new version
    assert store.compact().predictions == 0 and DeltaTable(str(store.predictions_path)).version() == version

    _write(shop, [_event("b", i) for i in range(5)])  # a second log file (a restarted worker)
    result = store.compact()
    assert (result.predictions, result.files) == (5, 1)
    assert sorted(_stored(store)) == [("a", i) for i in range(3)] + [("b", i) for i in range(5)]
    assert DeltaTable(str(store.predictions_path)).version() == version + 1


def test_a_torn_last_line_waits_until_it_is_complete(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    log = _write(shop, [_event("a")])
    line = orjson.dumps(_event("b")) + b"\n"
    with log.files[0].open("ab") as f:
        f.write(line[:40])
    assert (store.compact().predictions, store.compact().bad) == (1, 0)
    with log.files[0].open("ab") as f:
        f.write(line[40:])
    assert store.compact().predictions == 1
    assert sorted(_stored(store)) == [("a", 0), ("b", 0)]


def test_malformed_lines_are_skipped_counted_and_located(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    log = _write(shop, [_event("a")])
    with log.files[0].open("ab") as f:
        f.write(b"garbage\n")
        f.write(orjson.dumps(_event("b", record="x")) + b"\n")
        f.write(orjson.dumps({k: v for k, v in _event("c").items() if k != "request_id"}) + b"\n")
        f.write(b"[1, 2]\n")
        f.write(orjson.dumps(_event("d", inputs="not an object")) + b"\n")
        f.write(orjson.dumps(_event("e")) + b"\n")
    result = store.compact()
    assert (result.predictions, result.bad) == (2, 5)
    name = log.files[0]
    assert result.problems[0].startswith(f"{name}:2: not a JSON line: ")  # then orjson's own words
    assert result.problems[1:] == [f"{name}:3: record: 'x' is not a valid int32",
                                   f"{name}:4: request_id is missing",
                                   f"{name}:5: not a JSON object",
                                   f"{name}:6: inputs: 'not an object' is not a JSON object"]
    assert sorted(_stored(store)) == [("a", 0), ("e", 0)]
    with name.open("ab") as f:  # only bad lines are new: the offsets still move past them
        f.write(b"{}\n")
    assert (store.compact().bad, store.compact().bad) == (1, 0)


def test_offsets_are_committed_with_the_rows_and_survive_reopening(shop: Path) -> None:
    log = _write(shop, [_event("a", i) for i in range(4)])
    store = PredictionStore(load_project(shop))
    assert store.compact().predictions == 4
    commit = DeltaTable(str(store.predictions_path)).history(1)[0]
    assert orjson.loads(commit["cd4ml.offsets"]) == {log.files[0].name: log.files[0].stat().st_size}
    assert PredictionStore(load_project(shop)).compact().predictions == 0


def test_concurrent_compactions_store_every_line_once(shop: Path) -> None:
    project = load_project(shop)
    log = PredictionLog(project.resolve(project.config.serving.log_dir), flush_interval=0.01, max_bytes=50_000)
    log.start()
    stop = threading.Event()
    totals: list[int] = []

    def compact_until_stopped() -> None:
        store = PredictionStore(project)  # each thread its own store: no shared state but the files
        n = 0
        while not stop.is_set():
            n += store.compact().predictions
        totals.append(n)

    threads = [threading.Thread(target=compact_until_stopped) for _ in range(3)]
    for th in threads:
        th.start()
    for i in range(300):
        log.emit_many([_event(f"r{i}", j) for j in range(10)])
        time.sleep(0.002)
    log.close()
    stop.set()
    for th in threads:
        th.join()
    store = PredictionStore(project)
    totals.append(store.compact().predictions)
    stored = _stored(store)
    assert len(log.files) > 5  # rotation happened under the compactions
    assert sum(totals) == len(stored) == len(set(stored)) == 3_000


def test_a_compaction_killed_at_any_moment_neither_duplicates_nor_loses(shop: Path) -> None:
    code = ("import sys; from cd4ml.config import load_project; from cd4ml.monitor.store import PredictionStore; "
            "store = PredictionStore(load_project(sys.argv[1])); print('ready', flush=True); store.compact()")
    exits = []
    for n, delay in enumerate((0.05, 0.2, 0.5, 2.0)):  # reading, converting, writing, committed (~0.3 s a round)
        _write(shop, [_event(f"r{n}-{i}", j) for i in range(5_000) for j in range(2)])
        child = subprocess.Popen([sys.executable, "-c", code, str(shop)], stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        exits.append(child.wait())
        child.stdout.close()
    store = PredictionStore(load_project(shop))
    print(f"\nkilled compactions' exit codes {exits}; the next one stored {store.compact().predictions} rows")
    stored = _stored(store)
    assert len(stored) == len(set(stored)) == 40_000


def test_actuals_from_the_log_and_given_directly(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    _write(shop, [_actual(), _actual(request_id="a", record=0, keys=None, values={"unit_sales": 2, "family": "X"}),
                  _actual(keys=None)], prefix="actuals")
    result = store.compact()
    assert (result.predictions, result.actuals, result.bad) == (0, 2, 1)
    assert "neither request_id nor keys is given" in result.problems[0]

    added = store.append_actuals([_actual(source="file", values={"unit_sales": 1.5, "perishable": "1"})])
    assert added == 1 and store.compact().actuals == 0  # the offsets stayed where they were
    with pytest.raises(DataRejected, match=r"event 1: values\.unit_sales: 'many' is not a valid double"):
        store.append_actuals([_actual(), _actual(values={"unit_sales": "many"})])

    table = store.actuals().to_table()
    schema = table.schema
    assert schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("keys").type == pa.struct([("date", pa.date32()), ("store_nbr", pa.int64()),
                                                   ("item_nbr", pa.int64())])
    assert [f.name for f in schema.field("values").type] == [
        "family", "item_class", "perishable", "city", "state", "store_type", "cluster", "unit_sales",
        "expected_sales"]
    rows = sorted(table.to_pylist(), key=lambda r: (r["source"], r["request_id"] or ""))
    assert [(r["source"], r["request_id"], r["record"]) for r in rows] == [
        ("file", None, None), ("http", None, None), ("http", "a", 0)]
    assert rows[0]["values"]["perishable"] == 1 and rows[0]["values"]["unit_sales"] == 1.5
    assert rows[1]["keys"] == {"date": dt.date(2024, 8, 1), "store_nbr": 2, "item_nbr": 100007}
    assert rows[2]["keys"] is None and rows[2]["values"]["family"] == "X" and rows[2]["values"]["city"] is None


def test_duckdb_queries_the_store(shop: Path) -> None:
    store = PredictionStore(load_project(shop))
    assert store.connect().execute("SELECT count(*) FROM predictions").fetchall() == [(0,)]  # typed and empty
    _write(shop, [_event("a", 0), _event("a", 1, output=5.0), _event("b", 0, inputs={"store_nbr": 9})])
    store.append_actuals([_actual(request_id="a", record=1, keys=None)])
    store.compact()
    con = duckdb.connect()
    con.register("p", store.predictions())
    con.register("a", store.actuals())
    assert con.sql("""SELECT p.prediction, a."values".unit_sales FROM p JOIN a USING (request_id, record)""") \
        .fetchall() == [(5.0, 4.0)]
    assert store.connect().sql("SELECT inputs.store_nbr, count(*) FROM predictions GROUP BY 1 ORDER BY 1") \
        .fetchall() == [(2, 2), (9, 1)]


def test_lines_and_tables_from_before_the_traffic_field_read_as_live(shop: Path) -> None:
    import shutil

    from deltalake import CommitProperties, write_deltalake

    from cd4ml.monitor.live import LiveData

    project = load_project(shop)
    store = PredictionStore(project)
    _write(shop, [_event("a"), _event("b")])  # lines as the service wrote them before the field existed
    store.compact()
    # The table as an earlier cd4ml wrote it: no traffic column, the same offsets in its commit.
    offsets = DeltaTable(str(store.predictions_path)).history(1)[0]["cd4ml.offsets"]
    old = store.predictions().to_table().drop_columns(["traffic"])
    shutil.rmtree(store.predictions_path)
    write_deltalake(str(store.predictions_path), old,
                    commit_properties=CommitProperties(custom_metadata={"cd4ml.offsets": offsets}))
    live = LiveData(project.config, store.predictions(), None, windows=project.config.monitoring.windows)
    assert sorted(live.frame["request_id"]) == ["a", "b"] and live.excluded.test == 0

    _write(shop, [_event("c", traffic="live"), _event("d", traffic="test")])
    assert store.compact().predictions == 2  # the column is added to the old table
    rows = store.predictions().to_table(columns=["request_id", "traffic"]).to_pylist()
    assert sorted((r["request_id"], r["traffic"]) for r in rows) == [
        ("a", None), ("b", None), ("c", "live"), ("d", "test")]
    live = LiveData(project.config, store.predictions(), None, windows=project.config.monitoring.windows)
    assert sorted(live.frame["request_id"]) == ["a", "b", "c"]
    assert (live.excluded.test, live.excluded.out_of_range) == (1, 0)


# -- the real service under load ------------------------------------------------------------------

RECORDS = [{"date": f"2024-08-{1 + i % 28:02d}", "store_nbr": 1 + i % 3, "item_nbr": 100001 + i % 40,
            "onpromotion": i % 2} for i in range(200)]


class Load:
    """Client threads posting single records and 10-record batches.

    `ok`: (the request_id the service answered, records, monotonic time of the 200 response);
    `sent`: one entry per request tried.
    Leaving the `with` block waits for the clients; setting `stop` ends them sooner.
    """

    def __init__(self, url: str, threads: int = 8, requests: int = 60) -> None:
        self.ok: list[tuple[str, int, float]] = []
        self.sent: list[int] = []  # one entry per request tried (appends are thread safe)
        self.failed = 0
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, t, requests)) for t in range(threads)]

    def __enter__(self) -> "Load":
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for th in self._threads:
            th.join()

    def _run(self, url: str, t: int, requests: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(requests):
                if self.stop.is_set():
                    return
                body = RECORDS[(t * 7 + i) % 200] if i % 2 else RECORDS[(t + i) % 190:(t + i) % 190 + 10]
                self.sent.append(t)
                try:
                    resp = client.post("/predict", json=body)
                except httpx.HTTPError:
                    self.failed += 1
                    continue
                if resp.status_code == 200:
                    self.ok.append((resp.json()["request_id"], 1 if i % 2 else 10, time.monotonic()))
                else:
                    self.failed += 1

    def expected(self) -> set[tuple[str, int]]:
        return {(rid, j) for rid, n, _ in self.ok for j in range(n)}


def _own_store(root: Path, name: str) -> PredictionStore:
    """Point the project's log and store at fresh folders, so each test sees only its own traffic."""
    edit_yaml(root, serving__log_dir=f".cd4ml/{name}/log", monitoring__store=f".cd4ml/{name}/store")
    return PredictionStore(load_project(root))


@pytest.mark.slow
def test_after_sigterm_every_successful_response_is_stored(served_shop: Path) -> None:
    store = _own_store(served_shop, "sigterm")
    with Service(served_shop) as svc:
        svc.wait_until("/ready", 200)
        with Load(svc.url) as load:
            pass
        # SIGTERM: the log flushes on shutdown; uvicorn re-raises the signal after it
        assert svc.stop() in (0, -signal.SIGTERM)
    result = store.compact()
    stored = _stored(store)
    expected = load.expected()
    print(f"\nSIGTERM: {len(load.ok)} requests ok, {load.failed} failed, {len(expected)} records, "
          f"{result.predictions} rows stored")
    assert load.failed == 0 and result.bad == 0
    assert len(stored) == result.predictions == len(expected) and set(stored) == expected


@pytest.mark.slow
def test_after_sigkill_only_the_last_flush_interval_is_missing(served_shop: Path) -> None:
    store = _own_store(served_shop, "sigkill")
    svc = Service(served_shop)
    try:
        svc.wait_until("/ready", 200)
        with Load(svc.url, requests=10_000) as load:
            started = time.monotonic()
            # Mid-load: several flush intervals in, the clients still busy.
            while len(load.ok) < 300 or time.monotonic() - started < 2.0:
                time.sleep(0.01)
            killed_at = time.monotonic()
            os.kill(svc.proc.pid, signal.SIGKILL)
            load.stop.set()
    finally:
        svc.stop()
    result = store.compact()
    stored = set(_stored(store))
    expected = load.expected()
    missing = expected - stored
    ages = sorted(killed_at - t for rid, n, t in load.ok if any((rid, j) in missing for j in range(n)))
    unanswered = {rid for rid, _ in stored} - {rid for rid, _, _ in load.ok}
    print(f"\nSIGKILL: {len(load.ok)} requests ok ({len(expected)} records), {len(stored)} rows stored, "
          f"{len(missing)} records missing from {len(ages)} requests answered at most "
          f"{max(ages, default=0):.3f} s before the kill; {len(unanswered)} stored requests unanswered")
    assert result.bad == 0 and len(stored) == result.predictions
    # A request logged in the instant between the writer's flush and its response being sent is
    # stored but unanswered: one at most per client thread, and never more requests than were sent.
    assert len({rid for rid, _ in stored}) <= len(load.sent) and len(unanswered) <= 8
    assert len(expected & stored) > 0
    assert max(ages, default=0) < 1.0  # PredictionLog's flush interval (0.5 s) plus scheduling on a busy machine
