"""Whether a run repeats an earlier one: the finished run with the same fingerprint, if any.

A run's own process imports MLflow only once its model is training: MLflow's modules and
its store's (about 90 MB, 2-3 s) would otherwise sit under the peak of building and binning
the features, and the lookup has to answer before anything is trained. So the lookup runs in
a child process (`python -m cd4ml.train.rerun`), started as early as the store is known and
done before the data loads. In a process that has MLflow loaded already (a notebook, a test
session) there is nothing to keep out, and the lookup runs in that process. Either way it opens
the store (unless the embedded store's file answers, below), so a store that cannot be reached
stops the run before training, even with --force.
The child imports MLflow while the run imports its own libraries, and opens the store only once
it has the fingerprint (the run knows it first, about a second earlier): until then it can be
stopped at once, with nothing half written.

A project's embedded store is a SQLite file only cd4ml's runs write to. Most runs repeat none,
and for those the file itself answers: read-only, with no MLflow, in milliseconds, where the
child would keep the run waiting 2-4 s. The child is then stopped before it opens the store.
The file is trusted only while its schema is the one the installed MLflow last opened it at
(`note_opened`): after an MLflow upgrade, MLflow opens it first, and a schema it cannot use
stops the run before training. A fingerprint that may be there, or a file that cannot be read
that way, is left to MLflow too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from cd4ml.config import Project

FINGERPRINT_TAG = "cd4ml.fingerprint"
GATE_CHAMPION_TAG = "cd4ml.gate.champion"  # the champion version the gate compared with ("" for none)
PROMOTION_TAG = "cd4ml.promotion"  # set once the promotion decision is carried out

# Once it has the fingerprint, the child may be creating or migrating the store (MLflow does both
# on opening): after a run stops early it is left to finish, not killed mid-way.
_STOP_WAIT_S = 120


class EarlierRunLookup:
    """Started early, it imports MLflow while the caller gets to know the run's fingerprint
    (`ask`); `result()` then gives the answer."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None,
                 embedded_db: Path | None = None) -> None:
        """`embedded_db`: the SQLite file of the project's embedded store, when `uri` is that store."""
        self.uri = uri
        self._store = {"uri": uri, "experiment": experiment, "artifact_location": artifact_location}
        self._embedded_db = embedded_db
        self._fingerprint: str | None = None
        self._known: dict[str, Any] | None = None  # the answer, when the embedded store's file gave it
        self._proc: subprocess.Popen[str] | None = None
        self._asked = False  # whether the child has been sent the fingerprint (and may open the store)
        if embedded_db is not None and not embedded_db.exists():
            self._known = {"run": None}  # no store yet, no run in it: MLflow creates it while the model trains
        elif "mlflow" not in sys.modules:
            self._proc = subprocess.Popen([sys.executable, "-P", "-m", "cd4ml.train.rerun"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._send(self._store)

    @classmethod
    def for_project(cls, project: "Project") -> "EarlierRunLookup":
        from cd4ml import tracking

        return cls(tracking.tracking_uri(project), tracking.experiment_name(project),
                   tracking.artifact_location(project), tracking.embedded_db(project))

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
        if self._known is None and self._embedded_db is not None and not may_hold(self._embedded_db, fingerprint):
            self._known = {"run": None}
            self._cancel()
        if self._proc is not None:
            self._send({"fingerprint": fingerprint})
            self._asked = True

    def _cancel(self) -> None:
        # Without a fingerprint the child has not opened the store: nothing is half written.
        if self._proc is not None:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None

    def result(self) -> dict[str, Any] | None:
        """The earlier run (`find`'s answer), or None; raises Cd4mlError if the store could not be asked."""
        if self._known is not None:
            answer = self._known
        elif self._proc is None:
            answer = _answer(self._store, self._fingerprint)
        else:
            answer = self._child_answer(self._proc)
        if "error" in answer:
            raise Cd4mlError(f"cannot read the MLflow store at {self.uri}: {answer['error']}")
        return answer["run"]

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


def may_hold(db: Path, fingerprint: str | None) -> bool:
    """Whether the embedded store's SQLite file `db` may hold a run tagged with `fingerprint` (None:
    whether MLflow must open it at all). False only when the file could be read, is at the schema
    the installed MLflow last opened it at, and holds none; the file is never created or written here."""
    if not db.exists():
        return False
    try:
        with contextlib.closing(_read_only(db)) as con:
            # MLflow's own table of run tags: should a later MLflow keep them elsewhere, the query
            # fails and MLflow is asked (and tests/test_pipeline.py's check of this function fails).
            found = con.execute("SELECT 1 FROM tags WHERE key = ? AND value = ? LIMIT 1",
                                (FINGERPRINT_TAG, fingerprint or "")).fetchone()
            opened = _opened(con)
    except sqlite3.Error:  # not a store, damaged, locked: MLflow says what is wrong
        return True
    if opened != _read_opened(db):  # MLflow has to check this schema first
        return True
    return fingerprint is not None and found is not None


def note_opened(db: Path) -> None:
    """Remember that the installed MLflow opened the embedded store `db`, and at which schema, for
    `may_hold`; without the note the next run asks MLflow (a wait, no error)."""
    try:
        with contextlib.closing(_read_only(db)) as con:
            opened = _opened(con)
        note = _note_file(db)
        tmp = note.with_name(f"{note.name}.tmp")
        tmp.write_text(json.dumps(opened), encoding="utf-8")
        tmp.replace(note)
    except (sqlite3.Error, OSError):
        pass


def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)


def _opened(con: sqlite3.Connection) -> dict[str, Any]:
    """The installed MLflow's version and the store's schema revisions (Alembic's, as MLflow keeps them)."""
    schema = sorted(row[0] for row in con.execute("SELECT version_num FROM alembic_version"))
    return {"mlflow": importlib.metadata.version("mlflow"), "schema": schema}


def _note_file(db: Path) -> Path:
    return db.with_name(f"{db.name}.opened.json")


def _read_opened(db: Path) -> Any:
    try:
        return json.loads(_note_file(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
                "baseline": split("baseline."), "oracle": split("oracle.") or None,
                "checks": json.loads(Path(path).read_text())["checks"]}
    return None


def _answer(store: dict[str, Any], fingerprint: str | None) -> dict[str, Any]:
    """{"run": find's answer (None without a fingerprint)} or {"error": what went wrong}."""
    from cd4ml import tracking

    try:
        client = tracking.connect_uri(store["uri"])
        experiment_id = tracking.ensure_experiment(client, store["experiment"], store["artifact_location"])
        return {"run": None if fingerprint is None else find(client, experiment_id, fingerprint)}
    except Exception as exc:  # reported to the run, which stops with it
        return {"error": f"{type(exc).__name__}: {exc}"}


def _main() -> None:
    import os

    from cd4ml import tracking

    store = json.loads(sys.stdin.readline())
    tracking.import_mlflow()  # the slow part, while the run gets to know the fingerprint

    line = sys.stdin.readline()  # the fingerprint; the store is opened only once it comes
    if not line:  # the run stopped before it knew it
        return
    sys.stdout.write(json.dumps(_answer(store, json.loads(line)["fingerprint"])) + "\n")
    sys.stdout.flush()
    # Nothing is left to write; MLflow's exit handlers would keep the run waiting for about a second.
    os._exit(0)


if __name__ == "__main__":
    _main()
