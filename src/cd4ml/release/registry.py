"""The model registry: versions with lineage, the `champion` alias, and its history.

MLflow's registry keeps only the current alias, so every move of `champion`
is also written as a release event (a run in the experiment
`cd4ml-releases/<model name>`: kind, from, to, who, why, when). The history
lives in the same tracking store as the models, on any MLflow backend.
Rollback replays that history as a stack of champions and pops one.

A move is one recorded transition: the event is written first (its run RUNNING), then the alias
moves, then the event is marked done (FINISHED). Moves take turns under a lock, and whoever takes
the lock first settles a move that a killed process left half done: done if the alias had moved,
dropped if not. So the history and the alias never disagree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from cd4ml.errors import ReleaseError
from cd4ml.faults import crash_point
from cd4ml.features.code import folder_digest
from cd4ml.locking import exclusive_lock

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from cd4ml.config import Project
    from cd4ml.release.package import Release

log = logging.getLogger("cd4ml.release")

CHAMPION = "champion"
TAG = "cd4ml."
PASSED, REJECTED, PENDING = "passed", "rejected", "pending"
RELEASE_DIGEST = "release_digest"  # version tag: `folder_digest` of the release folder at registration
ABANDONED = "abandoned"  # pending, but the run that registered it died before the gate's verdict
# Event kinds that put a new champion on top of the stack; a rollback pops it.
_PUSHES = ("auto-promote", "promote", "force-promote")


@dataclass(frozen=True)
class ReleaseEvent:
    kind: str
    from_version: str | None
    to_version: str
    who: str
    why: str
    time: dt.datetime

    @classmethod
    def from_tags(cls, t: dict[str, str]) -> "ReleaseEvent":
        return cls(kind=t[f"{TAG}event.kind"], from_version=t.get(f"{TAG}event.from") or None,
                   to_version=t[f"{TAG}event.to"], who=t.get(f"{TAG}event.who", ""),
                   why=t.get(f"{TAG}event.why", ""), time=dt.datetime.fromisoformat(t[f"{TAG}event.time"]))


@dataclass(frozen=True)
class Settled:
    """A move found half done, and whether it was recorded as done (the alias had moved) or dropped."""

    event: ReleaseEvent
    done: bool


@dataclass(frozen=True)
class Leftover:
    """A version left `pending` by a run that died before the gate's verdict."""

    version: str
    run_id: str | None
    host: str | None
    pid: int | None


def run_owner() -> dict[str, str]:
    """Tags that let `leftovers` tell a run in progress from one that died: this host and process."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def current_user() -> str:
    """Who moves the alias: CD4ML_USER, else the CI actor, else the login name."""
    for var in ("CD4ML_USER", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def release_folder_digest(release_dir: Path) -> str:
    """`folder_digest` of a release folder, after removing its compiled bytecode: that is not part of
    the digest, and Python would run it in place of the verified source."""
    if not release_dir.is_dir():
        return "no release folder"
    for compiled in list(release_dir.rglob("__pycache__")):
        shutil.rmtree(compiled, ignore_errors=True)
    return folder_digest(release_dir)


def _not_found(exc: Exception, *also: str) -> bool:
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", *also)


def _unavailable(what: str, exc: Exception) -> ReleaseError:
    return ReleaseError(f"{what}: the model registry failed: {exc}")


class Registry:
    """One registered model and its release history.

    `lock_dir` holds the lock that alias moves (and a run's step from reading the champion to
    promoting) take turns on; it serialises the processes of one machine.
    """

    def __init__(self, client: "MlflowClient", model_name: str, lock_dir: Path) -> None:
        self.client = client
        self.name = model_name
        key = hashlib.sha256(f"{client.tracking_uri}|{model_name}".encode()).hexdigest()[:16]
        self._lock_path = lock_dir / f"registry-{key}.lock"
        self._in_process = threading.RLock()  # flock is not re-entrant across descriptors: count our own hold
        self._held = False

    @classmethod
    def for_project(cls, project: "Project", client: "MlflowClient | None" = None) -> "Registry":
        """The project's registered model, in its tracking store (connected here unless `client` is given)."""
        from cd4ml import tracking

        return cls(client or tracking.connect(project), project.config.registry.model_name,
                   project.state_dir / "locks")

    # -- versions ----------------------------------------------------------------------
    def versions(self) -> list["ModelVersion"]:
        """All versions, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name='{self.name}'", max_results=10000)
        except MlflowException as exc:
            if _not_found(exc):
                return []
            raise _unavailable(f"cannot list the versions of model {self.name!r}", exc) from exc
        return sorted(found, key=lambda v: int(v.version))

    def version(self, version: str | int) -> "ModelVersion":
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            # A version that is not a number is just as absent.
            if _not_found(exc, "INVALID_PARAMETER_VALUE"):
                raise ReleaseError(f"model {self.name!r} has no version {version}") from None
            raise _unavailable(f"cannot read version {version} of model {self.name!r}", exc) from exc

    def champion(self) -> "ModelVersion | None":
        """The champion, or None when there is none (any other registry failure raises ReleaseError).

        A registry that cannot answer must not read as "no champion": the gate would
        then skip the comparison and auto-promote the candidate.
        """
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, CHAMPION)
        except MlflowException as exc:
            # MLflow answers INVALID_PARAMETER_VALUE for an alias the model does not have.
            if _not_found(exc, "INVALID_PARAMETER_VALUE"):
                return None
            raise _unavailable(f"cannot read the champion of model {self.name!r}", exc) from exc

    def tag(self, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, f"{TAG}{key}", str(value))

    def load(self, version: str | int, cache: Path, threads: int = 1) -> "Release":
        """Download (once), verify and load a version's release folder (`threads`: see `Release`).

        The cache key includes the store and the version's model source, so two
        registries (say, a local store and a server) never share a cached "version 1".
        Before anything in it is imported, the folder's digest must equal the one recorded in
        the registry at registration: code added to a cached copy or to the artifact store never runs.
        """
        from cd4ml.release.package import Release

        mv = self.version(version)
        key = hashlib.sha256(f"{self.client.tracking_uri}|{mv.source}".encode()).hexdigest()[:16]
        dest = cache / self.name / f"v{mv.version}-{key}"
        expected = mv.tags.get(f"{TAG}{RELEASE_DIGEST}")
        if dest.is_dir() and expected and not self._verified(dest, mv, expected, final=False):
            # A cached copy that differs from what was registered: kept aside, fetched again.
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                dest.rename(dest.with_name(f".{dest.name}.differs-{time.time_ns()}"))
        if not dest.is_dir():
            self._download(mv, dest)
        if expected:
            self._verified(dest, mv, expected, final=True)
        elif mv.tags.get(f"{TAG}gate") in (PENDING, None):
            raise ReleaseError(f"version {mv.version} of {self.name!r} has no recorded release digest (its run "
                               "died while registering it): it cannot be verified, so it is not loaded")
        else:
            log.warning("version %s of %r was registered before release digests were recorded: loaded "
                        "without verifying its files", mv.version, self.name)
        return Release(dest / "artifacts" / "release", threads)

    def _download(self, mv: "ModelVersion", dest: Path) -> None:
        import mlflow

        dest.parent.mkdir(parents=True, exist_ok=True)
        # A folder of this process's own: two workers or runs never write into one download.
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{mv.version}", dst_path=str(tmp))
            try:
                tmp.rename(dest)  # atomic: a folder under `dest` is always a whole download
            except OSError:
                if not dest.is_dir():  # not another process's finished copy: something else
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _verified(self, dest: Path, mv: "ModelVersion", expected: str, *, final: bool) -> bool:
        """Whether the release folder under `dest` holds exactly the files registered; if `final`, a
        difference is a ReleaseError instead."""
        release_dir = dest / "artifacts" / "release"
        actual = release_folder_digest(release_dir)
        if actual == expected:
            return True
        if final:
            raise ReleaseError(f"version {mv.version} of {self.name!r}: the files in {release_dir} differ from the "
                               f"ones registered (digest {actual[:12]}, registered {expected[:12]}): not loaded")
        return False

    # -- the champion alias -----------------------------------------------------------
    @contextlib.contextmanager
    def moving(self) -> Iterator[None]:
        """Hold the move lock for the `with` block, after settling a move a killed process left half done.

        Re-entrant within this object, so a caller holding it may promote.
        """
        with self._in_process:
            if self._held:
                yield
                return
            with exclusive_lock(self._lock_path):
                self._held = True
                try:
                    self._settle_interrupted_moves()
                    yield
                finally:
                    self._held = False

    def promote(self, version: str, *, kind: str, why: str, force: bool = False) -> ReleaseEvent:
        """Point `champion` at `version` and record the move.

        A version the gate rejected is refused unless `force` (with a reason).
        """
        with self.moving():
            mv = self.version(version)
            verdict = mv.tags.get(f"{TAG}gate")
            if verdict != PASSED and not force:
                why_not = "was rejected by" if verdict == REJECTED else "has no verdict from"
                raise ReleaseError(f"version {version} {why_not} the acceptance gate; "
                                   "use --force --reason '...' to promote it anyway")
            if force and not why.strip():
                raise ReleaseError("--force needs a --reason: it is recorded in the release history")
            current = self.champion()
            if current is not None and str(current.version) == str(mv.version):
                raise ReleaseError(f"version {version} is already the champion")
            return self._move(kind="force-promote" if force and verdict != PASSED else kind,
                              from_version=str(current.version) if current else None, to_version=str(mv.version),
                              why=why)

    def rollback(self, why: str) -> ReleaseEvent:
        """Move `champion` back to the release that was champion before the current one."""
        with self.moving():
            stack = self._champion_stack()
            current = self.champion()
            if current is None:
                raise ReleaseError(f"model {self.name!r} has no champion to roll back")
            if len(stack) < 2 or stack[-1] != str(current.version):
                raise ReleaseError(f"no earlier champion of {self.name!r} to roll back to")
            return self._move(kind="rollback", from_version=str(current.version), to_version=stack[-2], why=why)

    def _move(self, *, kind: str, from_version: str | None, to_version: str, why: str) -> ReleaseEvent:
        """Record the move as begun, move the alias, mark the record done (the caller holds the lock)."""
        event = ReleaseEvent(kind, from_version, to_version, current_user(), why, dt.datetime.now(dt.timezone.utc))
        tags = {
            f"{TAG}event.kind": kind, f"{TAG}event.from": from_version or "",
            f"{TAG}event.to": to_version, f"{TAG}event.who": event.who, f"{TAG}event.why": why,
            f"{TAG}event.time": event.time.isoformat(), f"{TAG}event.ns": str(time.time_ns()),
        }
        run = self.client.create_run(self._events_experiment(), tags=tags,
                                     run_name=f"{kind} {from_version or '-'} -> {to_version}")
        crash_point("move.begun")
        self.client.set_registered_model_alias(self.name, CHAMPION, to_version)
        crash_point("move.aliased")
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return event

    def interrupted_moves(self) -> list[ReleaseEvent]:
        """Moves begun and not marked done: one under way right now, or one a killed process left."""
        return [ReleaseEvent.from_tags(r.data.tags) for r in self._event_runs("RUNNING")]

    def _settle_interrupted_moves(self) -> list[Settled]:
        runs = self._event_runs("RUNNING")
        if not runs:
            return []
        champion = self.champion()
        settled = []
        for run in runs:
            done = champion is not None and str(champion.version) == run.data.tags[f"{TAG}event.to"]
            self.client.set_tag(run.info.run_id, f"{TAG}event.settled",
                                "interrupted after the alias moved: recorded as done" if done else
                                "interrupted before the alias moved: dropped")
            self.client.set_terminated(run.info.run_id, "FINISHED" if done else "KILLED")
            settled.append(Settled(ReleaseEvent.from_tags(run.data.tags), done))
        return settled

    # -- versions left behind -------------------------------------------------------------
    def leftovers(self) -> list[Leftover]:
        """Pending versions whose registering run is known dead (its process is gone from this host)."""
        out = []
        here = socket.gethostname()
        for mv in self.versions():
            tags = mv.tags
            if tags.get(f"{TAG}gate") != PENDING:
                continue
            host, pid = tags.get(f"{TAG}host"), tags.get(f"{TAG}pid")
            if host == here and pid and pid.isdigit() and not _process_alive(int(pid)):
                out.append(Leftover(str(mv.version), tags.get(f"{TAG}run_id"), host, int(pid)))
        return out

    def clean(self) -> tuple[list[Settled], list[Leftover]]:
        """Settle interrupted moves; mark each leftover version `abandoned` (promotable only with --force)
        and end its MLflow run as KILLED. Returns what was settled and what was abandoned."""
        with exclusive_lock(self._lock_path):  # not `moving()`: it would settle before we could count
            settled = self._settle_interrupted_moves()
            found = self.leftovers()
            for left in found:
                self.tag(left.version, {"gate": ABANDONED, "gate_failed": "run died before the verdict"})
                if left.run_id and self.client.get_run(left.run_id).info.status == "RUNNING":
                    self.client.set_terminated(left.run_id, "KILLED")
        return settled, found

    def _champion_stack(self) -> list[str]:
        stack: list[str] = []
        for event in self.history():
            if event.kind in _PUSHES:
                stack.append(event.to_version)
            elif event.kind == "rollback" and stack:
                stack.pop()
        return stack

    # -- history -------------------------------------------------------------------------
    def _events_experiment(self) -> str:
        name = f"cd4ml-releases/{self.name}"
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def _event_runs(self, status: str) -> list["Run"]:
        found = self.client.get_experiment_by_name(f"cd4ml-releases/{self.name}")
        if found is None:
            return []
        runs = self.client.search_runs([found.experiment_id], f"attributes.status = '{status}'", max_results=50000)
        return sorted(runs, key=lambda r: int(r.data.tags.get(f"{TAG}event.ns", "0")))

    def history(self) -> list[ReleaseEvent]:
        """Every alias move that was done, oldest first."""
        return [ReleaseEvent.from_tags(r.data.tags) for r in self._event_runs("FINISHED")]
