"""The live release: load the champion, watch its alias, swap without dropping a request.

A background thread polls the registry alias every `poll_seconds`. A new
champion is downloaded, loaded (with its own feature code snapshot), warmed up
on its packaged example rows and checked (finite predictions of the right
shape); only then is one reference switched. Requests read that reference
once, so a request in flight finishes on the release it started with. A
release that fails any step is not switched to: the old one keeps serving, the
failure is reported (log + /ready), and the load is tried again with a growing
pause (a download cut short is worth another try; a broken release costs one try
every few minutes) until it succeeds or the alias moves.

A restart resumes from the last champion this host served (a pointer file next to
the cached releases), loaded and checked like any release, and asks the registry
right after, in the background: the service answers before MLflow is even imported
(half of its start-up time), a registry that is down does not keep it from starting,
and a champion that moved while it was down is switched to within one registry
round trip, the same staleness any running instance has between two polls.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cd4ml.files import write_atomic
from cd4ml.release.package import Release, frame_to_batch
from cd4ml.release.registry import RELEASE_DIGEST, TAG, release_folder_digest

log = logging.getLogger("cd4ml.serve")

RETRY_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class _Failure:
    message: str
    attempts: int
    retry_at: float  # time.monotonic() after which the load is tried again


@dataclass(frozen=True)
class Live:
    """One loaded, checked release and what /version says about it."""

    release: Release
    version: str
    info: dict[str, Any] = field(default_factory=dict)


def _settle() -> None:
    """What is loaded by now lives as long as the process: out of the collector's full scans, which
    otherwise pause every request for ~80 ms with MLflow, pandas and LightGBM loaded. (Objects freed
    by reference counting still go; only cyclic garbage of a replaced release stays, once per swap.)"""
    gc.freeze()


class ReleaseWatcher:
    """Holds the live release; `current` is None until a champion exists."""

    def __init__(self, registry_factory: Callable[[], Any], cache: Any, poll_seconds: float,
                 resume_file: Path | None = None) -> None:
        """`resume_file`: where the last champion served is remembered (None: always ask the registry first)."""
        self._registry_factory = registry_factory
        self._cache = cache
        self._resume_file = resume_file
        self.poll_seconds = poll_seconds
        self.current: Live | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self.registry_checked = False  # whether the registry has answered since start
        self._failed: dict[str, _Failure] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Any = None

    def start(self) -> None:
        """Load the last champion served (or, with none, the registry's champion now), then watch the alias
        in the background."""
        resumed = self._resume()
        if not resumed:
            self.check()
        self._thread = threading.Thread(target=self._run, args=(resumed,), name="cd4ml-release-watcher",
                                        daemon=True)
        self._thread.start()

    def _resume(self) -> bool:
        if self._resume_file is None or not self._resume_file.is_file():
            return False
        try:
            doc = json.loads(self._resume_file.read_text(encoding="utf-8"))
            self._switch(self._checked(Release(self._trusted_folder(doc)), doc["version"], doc["info"]))
        except Exception as exc:  # a stale or damaged pointer: the registry decides, as without one
            log.warning("not resuming from %s: %s: %s", self._resume_file, type(exc).__name__, exc)
            return False
        return True

    def _trusted_folder(self, doc: dict[str, Any]) -> Path:
        """The pointer's release folder, if it lies in the release cache and its files have the digest
        recorded for it (the registry compares that digest with its own once it answers)."""
        folder = (Path(self._cache) / doc["folder"]).resolve()
        if not folder.is_relative_to(Path(self._cache).resolve()):
            raise ValueError(f"{folder} is outside the release cache {self._cache}")
        digest = doc["info"].get(RELEASE_DIGEST)
        if not digest or release_folder_digest(folder) != digest:
            raise ValueError(f"the files in {folder} differ from the release digest recorded for version "
                             f"{doc['version']}")
        return folder

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)  # a daemon; a registry call that hangs must not hold the shutdown

    def _run(self, check_now: bool) -> None:
        if check_now:
            self.check()
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> None:
        """One poll: swap to the champion if it changed and it loads and checks out."""
        try:
            if self._registry is None:
                self._registry = self._registry_factory()
                _settle()  # MLflow is imported by now: the last large import after a resume
            champion = self._registry.champion()
        except Exception as exc:  # a registry hiccup must not stop serving the current release
            self._report(f"cannot read the registry: {type(exc).__name__}: {exc}")
            return
        first_answer, self.registry_checked = not self.registry_checked, True
        if champion is None:
            if first_answer and self.current is not None:
                # Only a resumed release can be live before the registry's first answer: the registry
                # names no champion (alias removed, or another store at the same address), so it goes.
                log.warning("the registry has no champion: version %s, resumed from %s, is not served",
                            self.current.version, self._resume_file)
                self.current = None
            if self.current is None:
                self.last_error = None
            return
        version = str(champion.version)
        if self.current is not None and self.current.version == version:
            registered = (getattr(champion, "tags", None) or {}).get(f"{TAG}{RELEASE_DIGEST}")
            if registered is None or self.current.info.get(RELEASE_DIGEST) == registered:
                self.last_error = None  # a release that failed earlier is no longer the champion
                return
            log.warning("version %s, resumed from %s, is not the release registered: loading it from the "
                        "registry", version, self._resume_file)
        failed = self._failed.get(version)
        if failed is not None and time.monotonic() < failed.retry_at:
            return
        try:
            live = self._load(version, champion)
        except Exception as exc:
            attempts = failed.attempts + 1 if failed else 1
            pause = min(self.poll_seconds * 2 ** attempts, RETRY_MAX_SECONDS)
            self._failed[version] = _Failure(f"version {version} not switched to (attempt {attempts}, next in "
                                             f"{pause:.0f} s): {type(exc).__name__}: {exc}", attempts,
                                             time.monotonic() + pause)
            self._report(self._failed[version].message)
            return
        self._failed.pop(version, None)
        self._switch(live)
        self._remember(live)

    def _switch(self, live: Live) -> None:
        previous = self.current.version if self.current else None
        self.current = live  # the swap: one reference assignment
        self.swaps += 1
        self.last_error = None
        log.warning("serving version %s (was %s)", live.version, previous or "none")
        _settle()

    def _remember(self, live: Live) -> None:
        if self._resume_file is None:
            return
        try:
            self._resume_file.parent.mkdir(parents=True, exist_ok=True)
            # Relative to the cache, so the pointer still holds once the project folder is moved.
            folder = Path(live.release.folder).resolve().relative_to(Path(self._cache).resolve())
            # Workers that restart read a whole file.
            write_atomic(self._resume_file, json.dumps({"version": live.version, "folder": str(folder),
                                                        "info": live.info}))
        except OSError as exc:
            log.warning("cannot remember the champion in %s: %s", self._resume_file, exc)

    def _load(self, version: str, champion: Any) -> Live:
        release = self._registry.load(version, self._cache)
        created = getattr(champion, "creation_timestamp", None)
        info = release.info
        return self._checked(release, version, {
            "model_name": self._registry.name, "model_version": version,
            "data_version": info.get("data_version"), "git_commit": info.get("git_commit"),
            "run_id": getattr(champion, "run_id", None),
            RELEASE_DIGEST: (getattr(champion, "tags", None) or {}).get(f"{TAG}{RELEASE_DIGEST}"),
            "release_time": (dt.datetime.fromtimestamp(created / 1000, tz=dt.timezone.utc).isoformat()
                             if created else None),
        })

    @staticmethod
    def _checked(release: Release, version: str, info: dict[str, Any]) -> Live:
        """The release, warmed up on its packaged example rows and checked, as what /version shows."""
        example = release.example()
        pred = release.predict(frame_to_batch(example, release.input_names))
        # A classifier answers one probability per class, each row summing to 1.
        shape = (len(example),) if pred.ndim == 1 else (len(example), len(release.task.classes))
        if pred.shape != shape or not np.all(np.isfinite(pred)) or \
                (pred.ndim == 2 and not np.allclose(pred.sum(axis=1), 1.0)):
            raise ValueError(f"warm-up predictions are not {len(example)} finite numbers"
                             + (f" or rows of {shape[1]} class probabilities" if len(shape) == 2 else ""))
        return Live(release, version, {**info, "live_since": dt.datetime.now(dt.timezone.utc).isoformat()})

    def _report(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s", message)
        self.last_error = message
