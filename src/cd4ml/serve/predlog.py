"""The prediction log: every prediction as one JSON line, written off the request path.

An event is one flat JSON object per line, so Fluent Bit / fluentd can tail the
folder and forward lines to Elasticsearch or Loki unchanged. The service decides
the fields; expected shape (keys are strings; values str, int, float, bool, None,
lists, dicts, datetime/date or numpy scalars and arrays):

    {"request_id": "9f1c...", "time": "2026-11-26T14:00:00.123456+00:00", "model_version": "3",
     "inputs": {"store": 1, "item": 42}, "output": 12.3, "latency_ms": 0.8}

A classifier's event carries the decided label as `output` and the class probabilities, in the
release's classes order: `"output": "churn", "probabilities": [0.31, 0.69]`.

Files are `{prefix}-{UTC open time %Y%m%dT%H%M%S}-{pid}-{seq:05d}.jsonl`: each
worker process writes its own files into a shared folder, and names sort by time.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
_NAME_TAIL = r"-(\d{8}T\d{6})-(\d+)-(\d+)\.jsonl"


def log_file_name(prefix: str, stamp: str, pid: int, seq: int) -> str:
    """The name of a log file opened at `stamp` (UTC, %Y%m%dT%H%M%S) by process `pid`, its `seq`-th."""
    return f"{prefix}-{stamp}-{pid}-{seq:05d}.jsonl"


def log_files(paths: Iterable[Path], prefix: str) -> list[Path]:
    """The `prefix` log files among `paths`, in the order they were written: by time, process, sequence."""
    pattern = re.compile(re.escape(prefix) + _NAME_TAIL)
    found = [((m[1], int(m[2]), int(m[3])), path) for path in paths if (m := pattern.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


class PredictionLog:
    """An append-only, size-rotated JSON-lines log fed by a background writer thread.

    `emit` encodes the event (orjson, about 1 µs) and appends the line to an
    in-memory deque; the writer drains the queue and writes each batch with one
    `write` call, at least every `flush_interval` seconds and sooner when the
    queue is half full. Encoding at emit, not in the writer, keeps the queue
    free of dicts: thousands of them waiting for the writer were scanned by the
    garbage collector again and again (about 20% of a 100-record request).
    Bytes reach the OS on every write, so a SIGKILL loses at most about
    `flush_interval` seconds of events (those still queued); files are fsynced
    on rotation and on `close`, so power loss can lose more of the current file.

    Events that cannot be kept (queue full, log closed or writer dead, not
    serializable, disk error) are counted in `dropped` and never raised.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 64 * 2**20, flush_interval: float = 0.5,
                 max_queue: int = 100_000, prefix: str = "predictions", _pid: int | None = None) -> None:
        """`max_bytes` per file (bytes), `flush_interval` (s), `max_queue` (events); `_pid` is for tests."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._wake_at = max_queue // 2
        self._prefix = prefix
        self._pid = _pid
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _dropped (emitters race) and start/close
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._written = 0
        self._fd: int | None = None
        self._size = 0  # bytes in the current file
        self._seq = 0
        self._files: list[Path] = []
        self._failing = False  # warn once per streak of disk errors, not once per batch

    def start(self) -> None:
        """Start the writer thread; a second call, or a call after `close`, does nothing."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event for writing; never blocks, never raises."""
        self.emit_many([event])

    def emit_many(self, events: list[dict[str, Any]]) -> None:
        """Queue a batch in one operation; all of it is dropped if it does not fit."""
        queued = len(self._queue)
        if self._closed or queued + len(events) > self._max_queue:
            self._drop(len(events))
            return
        lines = []
        for event in events:
            try:
                lines.append(orjson.dumps(event, option=_DUMPS_OPTIONS))
            except orjson.JSONEncodeError:
                self._drop(1)
        self._queue.extend(lines)
        if queued + len(lines) >= self._wake_at:
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, fsync and close the file; waits up to `timeout` seconds for the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread is None:  # never started: write the backlog here
            self._drain()
            self._close_file()
        else:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("prediction log writer still busy after %.1f s; it finishes in the background", timeout)
                return
        self._drop(len(self._queue))  # emits that raced with close, or a dead writer's backlog

    @property
    def written(self) -> int:
        """Events written to disk so far."""
        return self._written

    @property
    def dropped(self) -> int:
        """Events dropped so far."""
        return self._dropped

    @property
    def files(self) -> list[Path]:
        """This log's files, oldest first."""
        return list(self._files)

    def _drop(self, n: int) -> None:
        if n:
            with self._lock:
                self._dropped += n

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()
        self._drain()
        self._close_file()

    def _drain(self) -> None:
        # Appending each line to one bytearray is ~4x faster than keeping a list of
        # bytes to join: orjson over-allocates every bytes object it returns.
        queue, buf, n = self._queue, bytearray(), 0
        for _ in range(len(queue)):  # only this thread pops, so len() items are there
            line = queue.popleft()
            if 0 < self._size + len(buf) and self._size + len(buf) + len(line) > self._max_bytes:
                self._write(buf, n)
                self._close_file()
                buf, n = bytearray(), 0
            buf += line
            n += 1
        self._write(buf, n)

    def _write(self, buf: bytearray, n: int) -> None:
        """Write `n` encoded events in one call (more only if the OS takes part of it)."""
        if not n:
            return
        try:
            if self._fd is None:
                self._open()
            data = memoryview(buf)
            while data:  # a regular-file write may be short (e.g. disk nearly full)
                data = data[os.write(self._fd, data):]
        except OSError as e:
            self._drop(n)
            if not self._failing:
                log.warning("prediction log: dropping events, cannot write to %s: %s", self.directory, e)
            self._failing = True
            self._close_file()  # a torn line then ends its file, where read_events tolerates it
            return
        self._failing = False
        self._size += len(buf)
        self._written += n

    def _open(self) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        pid = self._pid if self._pid is not None else os.getpid()
        while True:
            self._seq += 1
            path = self.directory / log_file_name(self._prefix, stamp, pid, self._seq)
            try:
                # O_EXCL: a restarted worker that got the same pid in the same second must not append to our file
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileExistsError:
                continue
            self._files.append(path)
            return

    def _close_file(self) -> None:
        if self._fd is None:
            return
        fd, self._fd, self._size = self._fd, None, 0
        try:
            os.fsync(fd)
        except OSError as e:
            log.warning("prediction log: fsync failed: %s", e)
        finally:
            os.close(fd)


def read_events(directory: Path, prefix: str = "predictions") -> Iterator[dict[str, Any]]:
    """Yield the events of every `prefix` file in `directory` (all processes), file by file in name order.

    A last line without its newline (a crash mid-write, or a file still being
    written) is skipped; a malformed complete line raises ValueError.
    """
    for path in log_files(Path(directory).iterdir(), prefix):
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number}: not a JSON line: {e}") from None
