"""Whether a run repeats an earlier one: the finished run with the same fingerprint, if any.

MLflow is the authority: `find` searches the runs by their fingerprint tag. A run's own process
imports MLflow only once its model is training (MLflow's modules and its store's, about 90 MB and
2-3 s, would otherwise sit under the peak of building the features), so the search runs in a
child process (`python -m cd4ml.pipeline.rerun`), started with the command; in a process that has
MLflow loaded already (a notebook, a test session) it runs in that process. The child opens the
store only once it has the fingerprint: until then it can be stopped at once, nothing half written.

Most runs repeat none, and for the embedded store cd4ml's own index answers them without MLflow
(`RunIndex`): a marker file per fingerprint, written before the run tags itself with it, so a
fingerprint without a marker has no run. Only a marked fingerprint is searched for. The store is
opened before training (a store that cannot be opened then stops the run before anything is
trained, even with --force) when it is a server, when the fingerprint is marked, when the project's
store has no index yet (the search then fills it in), and when the installed MLflow is not the one
that last opened the store (an upgrade may need a migration). Otherwise it is opened while the
model trains, and a failure stops the run before anything is registered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from cd4ml import __version__
from cd4ml.errors import Cd4mlError
from cd4ml.files import write_atomic

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from cd4ml.config import Project, ProjectConfig
    from cd4ml.gate.checks import GateReport

FINGERPRINT_TAG = "cd4ml.fingerprint"
GATE_CHAMPION_TAG = "cd4ml.gate.champion"  # the champion version the gate compared with ("" for none)
PROMOTION_TAG = "cd4ml.promotion"  # set once the promotion decision is carried out

# Once it has the fingerprint, the child may be creating or migrating the store (MLflow does both
# on opening): after a run stops early it is left to finish, not killed mid-way.
_STOP_WAIT_S = 120
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def run_fingerprint(cfg: "ProjectConfig", data_version: int, code_digest: str) -> str:
    """What determines a run's model and verdict: data version, feature code, resolved config, cd4ml.

    Nothing in it names the project's folder: a moved or copied project repeats its runs.
    """
    doc = {"data_version": data_version, "code": code_digest, "cd4ml": __version__,
           "config": cfg.model_dump(mode="json", by_alias=True)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class EarlierRun:
    """The finished run a run would repeat."""
    run_id: str
    version: str
    data_version: int
    judged_against: str | None  # the champion its gate compared with, if its promotion was interrupted
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    baseline: dict[str, float]
    oracle: dict[str, float] | None
    bias: float | None
    gate: "GateReport"
    decision_threshold: float | None = None  # the classifier's threshold, as logged (configured or chosen)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "EarlierRun":
        """From `find`'s fields (JSON on the way from the child process)."""
        from cd4ml.gate.checks import Check, GateReport  # not in the child, which needs no gate

        fields = {k: v for k, v in doc.items() if k != "checks"}
        return cls(**fields, gate=GateReport([Check(**c) for c in doc["checks"]]))


@dataclass(frozen=True)
class RunIndex:
    """cd4ml's index of the fingerprints the embedded store `db` may hold runs of, under `folder`:
    `fingerprints/<fingerprint>`, an empty file made before a run is tagged with it (so it may
    outlive a run that never finished), and `complete`, the version of the MLflow that last opened
    the store, made once every fingerprint in the store has its file. Without `complete` (a store
    older than the index) MLflow is asked, and the answer fills the index in."""

    folder: Path
    db: Path

    @classmethod
    def for_project(cls, project: "Project") -> "RunIndex | None":
        """The index of the project's embedded store; None for a server (which other clients write to)."""
        from cd4ml import tracking

        db = tracking.embedded_db(project)
        return None if db is None else cls(db.parent / "runs", db)

    def add(self, fingerprints: Iterable[str]) -> None:
        marks = self.folder / "fingerprints"
        marks.mkdir(parents=True, exist_ok=True)
        for fingerprint in fingerprints:
            if _FINGERPRINT.fullmatch(fingerprint):  # a tag set by hand names no file outside the folder
                (marks / fingerprint).touch()

    def is_complete(self) -> bool:
        return (self.folder / "complete").exists()

    def rules_out(self, fingerprint: str | None) -> bool:
        """Whether the store need not be opened before training: it holds no run with `fingerprint`
        (None: --force, nothing to look for) and the installed MLflow opened it last."""
        try:
            noted = (self.folder / "complete").read_text(encoding="utf-8")
        except OSError:
            return False
        if noted != _mlflow_version():
            return False
        return fingerprint is None or not (self.folder / "fingerprints" / fingerprint).exists()

    def mark_complete(self) -> None:
        """Every run in the store is indexed, and the installed MLflow opened it (or is about to make it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "complete", _mlflow_version())


def _mlflow_version() -> str:
    return importlib.metadata.version("mlflow")


class EarlierRunLookup:
    """Started early, it imports MLflow while the caller gets to know the run's fingerprint
    (`ask`); `result()` then gives the answer."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None,
                 index: RunIndex | None = None) -> None:
        """`index`: cd4ml's index of the project's embedded store, when `uri` is that store."""
        self.uri = uri
        self._store = {"uri": uri, "experiment": experiment, "artifact_location": artifact_location}
        self._index = index
        self._fingerprint: str | None = None
        self._listing = False  # whether MLflow is asked for every fingerprint too (to fill the index in)
        self._proc: subprocess.Popen[str] | None = None
        self._asked = False  # whether the child has been sent the fingerprint (and may open the store)
        # No store yet, no run in it: MLflow makes it while the model trains.
        self._no_store = index is not None and not index.db.exists()
        self._ruled_out = self._no_store
        if not self._no_store and "mlflow" not in sys.modules:
            self._proc = subprocess.Popen([sys.executable, "-P", "-m", "cd4ml.pipeline.rerun"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._send(self._store)

    @classmethod
    def for_project(cls, project: "Project") -> "EarlierRunLookup":
        from cd4ml import tracking

        return cls(tracking.tracking_uri(project), tracking.experiment_name(project),
                   tracking.artifact_location(project), RunIndex.for_project(project))

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the child already stopped: result() says why
            pass

    def ask(self, fingerprint: str | None) -> None:
        """Look for a finished run with this fingerprint (once); None: only open the store (--force)."""
        self._fingerprint = fingerprint
        if self._no_store:
            assert self._index is not None
            self._index.mark_complete()
        elif self._index is not None and self._index.rules_out(fingerprint):
            self._ruled_out = True
            self._cancel()
        self._listing = self._index is not None and not self._ruled_out and not self._index.is_complete()
        if self._proc is not None:
            self._send({"fingerprint": fingerprint, "list": self._listing})
            self._asked = True

    def _cancel(self) -> None:
        # Without a fingerprint the child has not opened the store: nothing is half written.
        if self._proc is not None:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None

    def result(self) -> EarlierRun | None:
        """The earlier run, or None; raises Cd4mlError if the store could not be asked."""
        if self._ruled_out:
            return None
        if self._proc is None:
            answer = _answer(self._store, self._fingerprint, self._listing)
        else:
            answer = self._child_answer(self._proc)
        if "error" in answer:
            raise Cd4mlError(f"cannot read the MLflow store at {self.uri}: {answer['error']}")
        if self._index is not None:
            if self._listing:
                self._index.add(answer["fingerprints"])
            if self._listing or self._index.is_complete():
                self._index.mark_complete()
        return None if answer["run"] is None else EarlierRun.from_json(answer["run"])

    @staticmethod
    def _child_answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
        stdout, stderr = proc.communicate()
        try:
            return json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"error": stderr.strip()[-2000:] or f"the lookup exited with code {proc.returncode}"}

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        if not self._asked:
            self._cancel()
            return
        try:
            self._proc.communicate(timeout=_STOP_WAIT_S)  # it may be opening the store: let it finish
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def find(client: "MlflowClient", experiment_id: str, fingerprint: str) -> dict[str, Any] | None:
    """The newest finished run with this fingerprint and a gate verdict, as JSON-ready fields."""
    from cd4ml.release.registry import PASSED, REJECTED

    runs = client.search_runs([experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'",
                              max_results=20, order_by=["attributes.start_time DESC"])
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("cd4ml.gate") not in (PASSED, REJECTED) or "cd4ml.model_version" not in tags:
            continue
        path = client.download_artifacts(run.info.run_id, "gate/report.json")
        split = lambda prefix: {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}  # noqa: E731
        # Killed between the verdict and the promotion: the rerun may carry the promotion out.
        unpromoted = tags["cd4ml.gate"] == PASSED and PROMOTION_TAG not in tags and GATE_CHAMPION_TAG in tags
        return {"run_id": run.info.run_id, "version": tags["cd4ml.model_version"],
                "data_version": int(tags["cd4ml.data_version"]),
                "judged_against": tags[GATE_CHAMPION_TAG] if unpromoted else None,
                "metrics": {k: v for k, v in metrics.items() if "." not in k},
                "baselines": _by_kind(split("baseline_")) or {"group_mean": split("baseline.")},  # older runs: one
                "baseline": split("baseline."),
                "oracle": split("oracle.") or None, "bias": metrics.get("bias.overall"),
                "checks": json.loads(Path(path).read_text())["checks"],
                "decision_threshold": (float(run.data.params["decision.threshold"])
                                       if "decision.threshold" in run.data.params else None)}
    return None


def _by_kind(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{"last_value.rmse": v} -> {"last_value": {"rmse": v}}: each baseline's logged metrics."""
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        kind, _, metric = name.partition(".")
        out.setdefault(kind, {})[metric] = value
    return out


def tagged_fingerprints(client: "MlflowClient") -> list[str]:
    """Every fingerprint a run in the store is tagged with (any experiment, deleted runs too)."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in _pages(lambda token: client.search_experiments(
        view_type=ViewType.ALL, page_token=token))]
    runs = _pages(lambda token: client.search_runs(experiments, f"tags.`{FINGERPRINT_TAG}` LIKE '%'",
                                                   run_view_type=ViewType.ALL, max_results=10_000,
                                                   page_token=token))
    return [run.data.tags[FINGERPRINT_TAG] for run in runs]


def _pages(search: Callable[[str | None], Any]) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = search(token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _answer(store: dict[str, Any], fingerprint: str | None, listing: bool) -> dict[str, Any]:
    """{"run": find's answer (None without a fingerprint), "fingerprints": every one in the store (if
    `listing`)} or {"error": what went wrong}."""
    from cd4ml import tracking

    try:
        client = tracking.connect_uri(store["uri"])
        experiment_id = tracking.ensure_experiment(client, store["experiment"], store["artifact_location"])
        answer: dict[str, Any] = {"run": None if fingerprint is None else find(client, experiment_id, fingerprint)}
        if listing:
            answer["fingerprints"] = tagged_fingerprints(client)
        return answer
    except Exception as exc:  # reported to the run, which stops with it
        return {"error": f"{type(exc).__name__}: {exc}"}


def _main() -> None:
    from cd4ml import tracking

    store = json.loads(sys.stdin.readline())
    tracking.import_mlflow()  # the slow part, while the run gets to know the fingerprint

    line = sys.stdin.readline()  # the fingerprint; the store is opened only once it comes
    if not line:  # the run stopped before it knew it
        return
    question = json.loads(line)
    sys.stdout.write(json.dumps(_answer(store, question["fingerprint"], question["list"])) + "\n")
    sys.stdout.flush()
    # Nothing is left to write; MLflow's exit handlers would keep the run waiting for about a second.
    os._exit(0)


if __name__ == "__main__":
    _main()
