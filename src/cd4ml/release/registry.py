"""The model registry: versions with lineage, the `champion` alias, and its history.

MLflow's registry keeps only the current alias, so every move of `champion`
is also written as a release event (a run in the experiment
`cd4ml-releases/<model name>`: kind, from, to, who, why, when). The history
lives in the same tracking store as the models, on any MLflow backend.
Rollback replays that history as a stack of champions and pops one.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import ReleaseError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from cd4ml.release.package import Release

CHAMPION = "champion"
TAG = "cd4ml."
PASSED, REJECTED, PENDING = "passed", "rejected", "pending"
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


def current_user() -> str:
    """Who moves the alias: CD4ML_USER, else the CI actor, else the login name."""
    for var in ("CD4ML_USER", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _not_found(exc: Exception, *also: str) -> bool:
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", *also)


def _unavailable(what: str, exc: Exception) -> ReleaseError:
    return ReleaseError(f"{what}: the model registry failed: {exc}")


class Registry:
    """One registered model and its release history."""

    def __init__(self, client: "MlflowClient", model_name: str) -> None:
        self.client = client
        self.name = model_name

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
        """Download (once) and load a version's release folder (`threads`: see `Release`).

        The cache key includes the store and the version's model source, so two
        registries (say, a local store and a server) never share a cached "version 1".
        """
        import hashlib

        import mlflow

        from cd4ml.release.package import Release

        mv = self.version(version)
        key = hashlib.sha256(f"{self.client.tracking_uri}|{mv.source}".encode()).hexdigest()[:16]
        dest = cache / self.name / f"v{mv.version}-{key}"
        release_dir = dest / "artifacts" / "release"
        if not release_dir.is_dir():
            tmp = dest.with_name(f"{dest.name}.partial")
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}", dst_path=str(tmp))
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        return Release(release_dir, threads)

    # -- the champion alias -----------------------------------------------------------
    def promote(self, version: str, *, kind: str, why: str, force: bool = False) -> ReleaseEvent:
        """Point `champion` at `version` and record the move.

        A version the gate rejected is refused unless `force` (with a reason).
        """
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
        self.client.set_registered_model_alias(self.name, CHAMPION, str(mv.version))
        return self._record(kind="force-promote" if force and verdict != PASSED else kind,
                            from_version=str(current.version) if current else None, to_version=str(mv.version),
                            why=why)

    def rollback(self, why: str) -> ReleaseEvent:
        """Move `champion` back to the release that was champion before the current one."""
        stack = self._champion_stack()
        current = self.champion()
        if current is None:
            raise ReleaseError(f"model {self.name!r} has no champion to roll back")
        if len(stack) < 2 or stack[-1] != str(current.version):
            raise ReleaseError(f"no earlier champion of {self.name!r} to roll back to")
        target = stack[-2]
        self.client.set_registered_model_alias(self.name, CHAMPION, target)
        return self._record(kind="rollback", from_version=str(current.version), to_version=target, why=why)

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

    def _record(self, *, kind: str, from_version: str | None, to_version: str, why: str) -> ReleaseEvent:
        event = ReleaseEvent(kind, from_version, to_version, current_user(), why,
                             dt.datetime.now(dt.timezone.utc))
        tags = {
            f"{TAG}event.kind": kind, f"{TAG}event.from": from_version or "",
            f"{TAG}event.to": to_version, f"{TAG}event.who": event.who, f"{TAG}event.why": why,
            f"{TAG}event.time": event.time.isoformat(), f"{TAG}event.ns": str(time.time_ns()),
        }
        run = self.client.create_run(self._events_experiment(), tags=tags,
                                     run_name=f"{kind} {from_version or '-'} -> {to_version}")
        self.client.set_terminated(run.info.run_id)
        return event

    def history(self) -> list[ReleaseEvent]:
        """Every alias move, oldest first."""
        found = self.client.get_experiment_by_name(f"cd4ml-releases/{self.name}")
        if found is None:
            return []
        runs = self.client.search_runs([found.experiment_id], max_results=50000)
        runs = sorted(runs, key=lambda r: int(r.data.tags.get(f"{TAG}event.ns", "0")))
        return [
            ReleaseEvent(
                kind=t[f"{TAG}event.kind"], from_version=t.get(f"{TAG}event.from") or None,
                to_version=t[f"{TAG}event.to"], who=t.get(f"{TAG}event.who", ""),
                why=t.get(f"{TAG}event.why", ""), time=dt.datetime.fromisoformat(t[f"{TAG}event.time"]),
            )
            for t in (r.data.tags for r in runs)
        ]
