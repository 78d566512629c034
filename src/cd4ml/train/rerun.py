"""Whether a run repeats an earlier one: the finished run with the same fingerprint, if any.

A run's own process imports MLflow only once its model is training: MLflow's modules and
its store's (about 90 MB, 2-3 s) would otherwise sit under the peak of building and binning
the features, and the lookup has to answer before anything is trained. So the lookup runs in
a child process (`python -m cd4ml.train.rerun`), started as early as the store is known and
done before the data loads. In a process that has MLflow loaded already (a notebook, a test
session) there is nothing to keep out, and the lookup runs in that process. Either way it opens
the store, so a store that cannot be reached stops the run before training, even with --force.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from cd4ml.config import Project

# After a run stops early, the child may still be creating or migrating the embedded store:
# it is left to finish (it exits once it sees no fingerprint comes) rather than killed mid-way.
_STOP_WAIT_S = 120


class EarlierRunLookup:
    """Started early, it opens the store while the caller gets to know the run's fingerprint
    (`ask`); `result()` then gives the answer."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None) -> None:
        self.uri = uri
        self._store = {"uri": uri, "experiment": experiment, "artifact_location": artifact_location}
        self._fingerprint: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        if "mlflow" not in sys.modules:
            self._proc = subprocess.Popen([sys.executable, "-P", "-m", "cd4ml.train.rerun"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._send(self._store)

    @classmethod
    def for_project(cls, project: "Project") -> "EarlierRunLookup":
        from cd4ml import tracking

        return cls(tracking.tracking_uri(project), tracking.experiment_name(project),
                   tracking.artifact_location(project))

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
        if self._proc is not None:
            self._send({"fingerprint": fingerprint})

    def result(self) -> dict[str, Any] | None:
        """The earlier run (`find`'s answer), or None; raises Cd4mlError if the store could not be asked."""
        if self._proc is None:
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
        try:
            self._proc.communicate(timeout=_STOP_WAIT_S)  # closes its stdin: no fingerprint will come
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def find(client: "MlflowClient", experiment_id: str, fingerprint: str) -> dict[str, Any] | None:
    """The newest finished run with this fingerprint and a gate verdict, as JSON-ready fields."""
    from cd4ml.release.registry import PASSED, REJECTED

    runs = client.search_runs([experiment_id], f"tags.`cd4ml.fingerprint` = '{fingerprint}'",
                              max_results=20, order_by=["attributes.start_time DESC"])
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("cd4ml.gate") not in (PASSED, REJECTED) or "cd4ml.model_version" not in tags:
            continue
        path = client.download_artifacts(run.info.run_id, "gate/report.json")
        split = lambda prefix: {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}  # noqa: E731
        return {"run_id": run.info.run_id, "version": tags["cd4ml.model_version"],
                "data_version": int(tags["cd4ml.data_version"]),
                "metrics": {k: v for k, v in metrics.items() if "." not in k},
                "baseline": split("baseline."), "oracle": split("oracle.") or None,
                "checks": json.loads(Path(path).read_text())["checks"]}
    return None


def _answer(store: dict[str, Any], fingerprint: str | None, client: Any = None) -> dict[str, Any]:
    """{"run": find's answer (None without a fingerprint)} or {"error": what went wrong}; connects to
    the store unless given its `client`."""
    from cd4ml import tracking

    try:
        client = client or tracking.connect_uri(store["uri"])
        experiment_id = tracking.ensure_experiment(client, store["experiment"], store["artifact_location"])
        return {"run": None if fingerprint is None else find(client, experiment_id, fingerprint)}
    except Exception as exc:  # reported to the run, which stops with it
        return {"error": f"{type(exc).__name__}: {exc}"}


def _main() -> None:
    store = json.loads(sys.stdin.readline())
    from cd4ml import tracking

    try:  # connected before the fingerprint comes: the run sends it after its own imports, seconds later
        client = tracking.connect_uri(store["uri"])
    except Exception as exc:
        answer: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        line = sys.stdin.readline()  # the fingerprint, once the run knows it
        if not line:  # the run stopped before it did
            return
        answer = _answer(store, json.loads(line)["fingerprint"], client)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    _main()
