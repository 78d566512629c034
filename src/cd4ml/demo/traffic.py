"""Clients of the prediction service, counting every answer and every failure.

A failed request is any non-200 answer or a transport error (refused, reset,
timeout): the demo's claim "zero failed requests" is counted here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Tally:
    ok: int = 0  # successful requests
    records: int = 0  # predictions in them
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, version) on change
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, version: str | None, error: str | None, records: int = 1) -> None:
        with self.lock:
            if error is not None:
                self.failed += 1
                if len(self.failures) < 20:
                    self.failures.append(error)
                return
            self.ok += 1
            self.records += records
            if not self.versions or self.versions[-1][1] != version:
                self.versions.append((time.monotonic(), str(version)))

    def version_since(self, since: float) -> list[str]:
        with self.lock:
            return [v for t, v in self.versions if t >= since]

    def add(self, other: "Tally") -> None:
        with self.lock:
            self.ok += other.ok
            self.records += other.records
            self.failed += other.failed
            self.failures.extend(other.failures)


def post(client: httpx.Client, body: Any, tally: Tally, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    """One request; the answer (or None) is counted in `tally`."""
    try:
        resp = client.post("/predict", json=body, headers=headers)
    except httpx.HTTPError as exc:
        tally.record(None, f"{type(exc).__name__}: {exc}")
        return None
    if resp.status_code != 200:
        tally.record(None, f"HTTP {resp.status_code}: {resp.text[:200]}")
        return None
    doc = resp.json()
    tally.record(doc["model_version"], None, len(doc["predictions"]) if "predictions" in doc else 1)
    return doc


# The clients of scenarios 1-5 send test traffic: their thousands of identical requests stay out of monitoring.
PROBE_HEADERS = {"X-Cd4ml-Traffic": "test"}


class Traffic:
    """`threads` clients sending `record` in a loop (pausing `pause` s between requests) until stopped, as
    test traffic (`PROBE_HEADERS`)."""

    def __init__(self, url: str, record: dict[str, Any], tally: Tally, threads: int = 1, pause: float = 0.02) -> None:
        self._url, self._record, self.tally, self._pause = url, record, tally, pause
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"cd4ml-demo-client-{i}")
                         for i in range(threads)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self._url, timeout=10) as client:
            while not self._stop.is_set():
                post(client, self._record, self.tally, PROBE_HEADERS)
                if self._pause:
                    self._stop.wait(self._pause)

    def __enter__(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
