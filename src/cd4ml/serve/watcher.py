"""The live release: load the champion, watch its alias, swap without dropping a request.

A background thread polls the registry alias every `poll_seconds`. A new
champion is downloaded, loaded (with its own feature code snapshot), warmed up
on its packaged example rows and checked (finite predictions of the right
shape); only then is one reference switched. Requests read that reference
once, so a request in flight finishes on the release it started with. A
release that fails any step is not switched to: the old one keeps serving, and
the failure is reported (log + /ready) until the alias moves again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cd4ml.release.package import Release, frame_to_batch

log = logging.getLogger("cd4ml.serve")


@dataclass(frozen=True)
class Live:
    """One loaded, checked release and what /version says about it."""

    release: Release
    version: str
    info: dict[str, Any] = field(default_factory=dict)


class ReleaseWatcher:
    """Holds the live release; `current` is None until a champion exists."""

    def __init__(self, registry_factory: Callable[[], Any], cache: Any, poll_seconds: float) -> None:
        self._registry_factory = registry_factory
        self._cache = cache
        self.poll_seconds = poll_seconds
        self.current: Live | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._failed: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Any = None

    def start(self) -> None:
        """Load the champion now (if any), then watch the alias in the background."""
        self.check()
        self._thread = threading.Thread(target=self._run, name="cd4ml-release-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> None:
        """One poll: swap to the champion if it changed and it loads and checks out."""
        try:
            if self._registry is None:
                self._registry = self._registry_factory()
            champion = self._registry.champion()
        except Exception as exc:  # a registry hiccup must not stop serving the current release
            self._report(f"cannot read the registry: {type(exc).__name__}: {exc}")
            return
        if champion is None:
            if self.current is None:
                self.last_error = None
            return
        version = str(champion.version)
        if self.current is not None and self.current.version == version:
            self.last_error = None  # a release that failed earlier is no longer the champion
            return
        if version in self._failed:
            return
        try:
            live = self._load(version, champion)
        except Exception as exc:
            self._failed[version] = f"version {version} not switched to: {type(exc).__name__}: {exc}"
            self._report(self._failed[version])
            return
        previous = self.current.version if self.current else None
        self.current = live  # the swap: one reference assignment
        self.swaps += 1
        self.last_error = None
        log.warning("serving version %s (was %s)", version, previous or "none")

    def _load(self, version: str, champion: Any) -> Live:
        release = self._registry.load(version, self._cache)
        example = release.example()
        pred = release.predict(frame_to_batch(example, release.input_names))
        if pred.shape != (len(example),) or not np.all(np.isfinite(pred)):
            raise ValueError(f"warm-up predictions are not {len(example)} finite numbers")
        info = dict(release.info)
        created = getattr(champion, "creation_timestamp", None)
        return Live(release, version, {
            "model_name": self._registry.name, "model_version": version,
            "data_version": info.get("data_version"), "git_commit": info.get("git_commit"),
            "run_id": getattr(champion, "run_id", None),
            "release_time": (dt.datetime.fromtimestamp(created / 1000, tz=dt.timezone.utc).isoformat()
                             if created else None),
            "live_since": dt.datetime.now(dt.timezone.utc).isoformat(),
        })

    def _report(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s", message)
        self.last_error = message
