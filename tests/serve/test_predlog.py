"""The prediction log against real files: concurrency, rotation, drops, torn lines, several workers."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cd4ml.serve.predlog import PredictionLog, read_events


def _event(thread: int, i: int) -> dict:
    return {"request_id": f"{thread}-{i}", "thread": thread, "i": i, "time": dt.datetime.now(dt.timezone.utc),
            "model_version": "3", "inputs": {"store": np.int64(i % 7), "price": np.float32(1.5)},
            "output": float(i) / 3, "latency_ms": 0.8}


def _emit_from_threads(log: PredictionLog, n_threads: int, per_thread: int) -> None:
    def work(t: int) -> None:
        for i in range(per_thread):
            log.emit(_event(t, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def test_concurrent_emits_are_all_written_once_and_intact(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_interval=0.05)
    log.start()
    _emit_from_threads(log, 8, 5_000)
    log.close()

    events = list(read_events(tmp_path))
    assert len(events) == 40_000
    assert len({e["request_id"] for e in events}) == 40_000
    e = next(e for e in events if e["request_id"] == "3-10")
    assert e["inputs"] == {"store": 3, "price": 1.5} and e["output"] == pytest.approx(10 / 3)
    assert dt.datetime.fromisoformat(e["time"]).tzinfo is not None
    assert (log.written, log.dropped) == (40_000, 0)


def test_rotation_keeps_files_near_max_bytes_and_order_per_thread(tmp_path: Path) -> None:
    max_bytes = 20_000
    log = PredictionLog(tmp_path, max_bytes=max_bytes, flush_interval=0.02)
    log.start()
    _emit_from_threads(log, 4, 1_000)
    log.close()

    assert len(log.files) > 5
    assert sorted(tmp_path.iterdir()) == log.files
    biggest_event = 400  # bytes; one _event line is about 200
    assert all(0 < f.stat().st_size <= max_bytes + biggest_event for f in log.files)
    events = list(read_events(tmp_path))
    assert len(events) == 4_000 == log.written
    for t in range(4):
        assert [e["i"] for e in events if e["thread"] == t] == list(range(1_000))


def test_emit_never_blocks_or_raises_when_full_and_counts_drops(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_queue=10)  # writer not started: nothing drains
    for i in range(1_000):  # a blocking emit would hang here: nothing drains the queue
        log.emit({"i": i})
    log.emit_many([{"i": i} for i in range(5)])
    assert log.dropped == 995

    log.emit_many([])  # nothing to drop, nothing queued
    log.close()  # a never-started log still writes its backlog
    assert [e["i"] for e in read_events(tmp_path)] == list(range(10))
    assert (log.written, log.dropped) == (10, 995)


def test_unserializable_events_are_dropped_and_counted(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.start()
    log.emit({"ok": 1})
    log.emit({"bad": object()})
    log.emit({1: "non-string key"})
    log.emit({"ok": 2})
    log.close()
    assert [e["ok"] for e in read_events(tmp_path)] == [1, 2]
    assert (log.written, log.dropped) == (2, 2)


def test_close_is_idempotent_flushes_and_later_emits_are_dropped(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_interval=60)  # only close can have written these
    log.start()
    log.emit_many([{"i": i} for i in range(100)])
    log.close()
    assert len(list(read_events(tmp_path))) == 100
    log.close()
    log.emit({"i": 100})
    log.emit_many([{"i": 101}, {"i": 102}])
    log.start()  # no writer comes back after close
    assert (log.written, log.dropped) == (100, 3)
    assert len(list(read_events(tmp_path))) == 100


def test_disk_errors_are_dropped_and_counted_then_writing_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = PredictionLog(folder, flush_interval=0.02)
    folder.rmdir()
    folder.write_text("")  # a file where the folder was: no file can be opened there, even as root
    log.start()
    log.emit_many([{"i": 0}, {"i": 1}])
    deadline = time.monotonic() + 5
    while log.dropped < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.dropped == 2

    folder.unlink()
    folder.mkdir()
    log.emit({"i": 2})
    log.close()
    assert [e["i"] for e in read_events(folder)] == [2]
    assert (log.written, log.dropped) == (1, 2)


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.emit_many([{"i": 0}, {"i": 1}])
    log.close()
    with log.files[0].open("ab") as f:
        f.write(b'{"i": 2, "inpu')
    assert [e["i"] for e in read_events(tmp_path)] == [0, 1]


def test_a_malformed_complete_line_raises(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.emit({"i": 0})
    log.close()
    with log.files[0].open("ab") as f:
        f.write(b"garbage\n")
    with pytest.raises(ValueError, match="not a JSON line"):
        list(read_events(tmp_path))


def test_two_workers_share_a_folder(tmp_path: Path) -> None:
    first = PredictionLog(tmp_path, _pid=1111)
    second = PredictionLog(tmp_path, _pid=2222)
    other = PredictionLog(tmp_path, prefix="predictions-shadow")  # another prefix is not read
    for log in (first, second, other):
        log.start()
    first.emit({"worker": 1})
    second.emit({"worker": 2})
    other.emit({"worker": 3})
    for log in (first, second, other):
        log.close()
    assert "-1111-" in first.files[0].name and "-2222-" in second.files[0].name
    assert sorted(e["worker"] for e in read_events(tmp_path)) == [1, 2]
    assert [e["worker"] for e in read_events(tmp_path, prefix="predictions-shadow")] == [3]


def test_events_reach_disk_within_flush_interval_without_close(tmp_path: Path) -> None:
    interval = 0.2
    log = PredictionLog(tmp_path, flush_interval=interval)
    log.start()
    try:
        log.emit({"i": 0})
        deadline = time.monotonic() + 2 * interval
        while not list(read_events(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e["i"] for e in read_events(tmp_path)] == [0]
        assert log.written == 1
    finally:
        log.close()
