"""`cd4ml serve` as a child process on loopback: start, wait for an endpoint, stop gracefully.

Used by `cd4ml demo` (and the test suite) to run the real service next to a
client, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cd4ml.errors import Cd4mlError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A `cd4ml serve` (or `cd4ml ui`: `command="ui"`) child process bound to 127.0.0.1; output goes to `log_path`."""

    def __init__(self, project: Path, *extra: str, poll: float = 0.5, log_path: Path | None = None,
                 command: str = "serve") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or project / ".cd4ml" / f"{command}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log_path.open("w")
        # The child must find the project's own store, not a URI MLflow exported into this process.
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cd4ml.cli", command, "-C", str(project), "--host", "127.0.0.1",
             "--port", str(self.port), *(["--poll", str(poll)] if command == "serve" else []), *extra],
            stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def status(self, path: str) -> int | None:
        """HTTP status of GET `path`, or None if nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def wait_until(self, path: str, status: int, timeout: float = 60) -> None:
        """Block until GET `path` answers `status`; raises with the service log if it never does."""
        deadline = time.monotonic() + timeout
        while self.status(path) != status:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Cd4mlError(f"the service never answered {status} on {path}; its log:\n"
                                 f"{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def wait_logged(self, predictions: int, actuals: int, timeout: float = 30) -> None:
        """Block until the service has written this many predictions and actuals to its logs (it writes
        them behind its answers, so a reader of the logs waits here first); raises with the counts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=5) as resp:
                    ready = json.load(resp)
            except urllib.error.HTTPError as exc:  # 503 without a release: the counts are in the body
                ready = json.load(exc)
            except OSError as exc:
                raise Cd4mlError(f"the service stopped answering ({exc}); its log:\n"
                                 f"{self.log_path.read_text()[-3000:]}") from None
            if (ready["predictions_logged"] or 0) >= predictions and ready["actuals_logged"] >= actuals:
                return
            if time.monotonic() > deadline:
                raise Cd4mlError(f"the service logged {ready['predictions_logged']} of {predictions} predictions "
                                 f"and {ready['actuals_logged']} of {actuals} actuals in {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> int:
        """Graceful shutdown (SIGTERM: finish requests, flush the prediction log); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode
