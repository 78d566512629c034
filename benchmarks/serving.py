"""Serving benchmark: `cd4ml serve` vs `mlflow models serve` vs a bare FastAPI "floor".

Same machine, same load generator (wrk + a Lua script for the POST body), same
registered model (`<model>@champion`), every server on 127.0.0.1 and under load
one at a time:

    cd4ml         cd4ml serve, prediction log on (the default), 1 worker
    cd4ml-nolog   cd4ml serve --no-log, 1 worker
    mlflow        mlflow models serve --env-manager local --workers 1
    floor         benchmarks/floor_app.py: FastAPI + booster.predict on pre-computed feature rows
    floor-features  the same floor computing each request's feature rows with the release's plan
    cd4ml-2w      cd4ml serve, log on, --workers 2          (skipped with --no-workers2 or
    mlflow-2w     mlflow models serve --workers 2            when the time budget is spent)

Per server, started one after another and kept running: seconds from process
start to the first 200 answer to a prediction; a check that it answers with sane
predictions (and the same numbers as cd4ml to 1e-9). Then `--rounds` rounds; in
each, every server gets each wrk point for `--seconds`: one record at concurrency
1 (-t1 -c1) and 16 (-t2 -c16), and 100-record batches at concurrency 16. Figures
are medians over rounds; ratios are medians of ratios taken in the same round,
so a shared machine's speed drifting between rounds cancels out. Server CPU
seconds (whole process tree) and peak RSS are sampled every 0.2 s.

    .venv/bin/python benchmarks/serving.py [--task binary] [--project DIR] [--seconds 4] [--rounds 3]

Without --project a fresh groceries project is made in a temp folder (about a
minute). Writes benchmarks/results/serving.json and serving.md.

`--task binary` serves a binary classifier of the same grocery world and size instead:
`high_sales`, whether a store sells more units of an item on a day than the median of
the training period's rows (see `to_binary`). The same records are sent; cd4ml and the
floor answer the decided class and both probabilities, mlflow's pyfunc the (n, 2)
probabilities; the probabilities must match cd4ml's to 1e-9. Writes serving-binary.json
and serving-binary.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
from floor_app import BATCH, RECORD, batch_records  # the floor knows exactly these records

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent  # the venv's bin: cd4ml, mlflow, uvicorn

TARGETS = {  # name -> (description, comparison, threshold)
    "ratio_vs_mlflow": ("cd4ml single-record req/s at c16 vs mlflow", ">=", 20.0),
    "p99_ms_c16": ("cd4ml single-record p99 at c16 (ms)", "<=", 10.0),
    "ratio_vs_floor": ("cd4ml single-record req/s at c16 vs floor", ">=", 2 / 3),
    "batch_ratio_vs_mlflow": ("cd4ml 100-record batch rows/s at c16 vs mlflow", ">=", 5.0),
    "batch_ratio_vs_floor": ("cd4ml 100-record batch rows/s at c16 vs floor", ">=", 0.85),
    # Idle latency against the floor that computes the same features per request: the bare floor skips them, which
    # no service of this model can (benchmarks/request_path.py: they are half of cd4ml's own time per request).
    "c1_ratio_vs_floor_features": ("cd4ml single-record req/s at c1 (idle latency) vs floor + per-request features",
                                   ">=", 0.75),
    "ready_s": ("cd4ml serve: process start to first answer, restart (s)", "<=", 3.0),
    "ready_first_start_s": ("cd4ml serve: process start to first answer, first start on this host (s)", "<=", 3.0),
}


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (out.stdout + out.stderr).splitlines()[0].strip() if (out.stdout + out.stderr) else "?"


# --------------------------------------------------------------------------- process tree sampling
class TreeSampler:
    """Samples a process and its descendants every `interval` s: CPU seconds and summed RSS."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.cpu_by_pid: dict[int, float] = {}
        self.peak_rss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss, alive = 0, 0
        with self._lock:
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        mem = p.memory_info().rss
                except psutil.Error:
                    continue
                # user + system of the process itself; children are counted as their own entries
                self.cpu_by_pid[p.pid] = t.user + t.system
                rss += mem
                alive += 1
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, alive)

    def cpu(self) -> float:
        """Cumulative CPU seconds of every process seen in the tree (sampled now)."""
        self.sample()
        with self._lock:
            return sum(self.cpu_by_pid.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------- wrk
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open([==[{body}]==], "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "\\nBENCH_JSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"bytes\\":%d,\\"err_connect\\":%d,"
    .. "\\"err_read\\":%d,\\"err_write\\":%d,\\"err_status\\":%d,\\"err_timeout\\":%d,"
    .. "\\"p50_us\\":%d,\\"p75_us\\":%d,\\"p90_us\\":%d,\\"p99_us\\":%d,\\"p999_us\\":%d,"
    .. "\\"mean_us\\":%.1f,\\"stdev_us\\":%.1f,\\"max_us\\":%d}}\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.stdev, latency.max))
end
"""


def write_lua(folder: Path, name: str, body: bytes) -> Path:
    body_path = folder / f"{name}.json"
    body_path.write_bytes(body)
    script = folder / f"{name}.lua"
    script.write_text(LUA.format(body=body_path), encoding="utf-8")
    return script


def run_wrk(wrk: str, url: str, script: Path, threads: int, conns: int, seconds: float) -> dict[str, Any]:
    seconds = max(1, math.ceil(seconds))  # wrk takes whole seconds only
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script),
           url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of wrk itself: the load generator's CPU
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-2000:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    secs = r["duration_us"] / 1e6
    errors = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
    return {
        "command": " ".join(cmd[:-2] + [script.name, url]),
        "requests": r["requests"], "seconds": round(secs, 3), "req_per_s": round(r["requests"] / secs, 1),
        "p50_ms": r["p50_us"] / 1000, "p75_ms": r["p75_us"] / 1000, "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000, "p999_ms": r["p999_us"] / 1000, "mean_ms": round(r["mean_us"] / 1000, 3),
        "max_ms": r["max_us"] / 1000, "errors": errors,
        "errors_detail": {k.removeprefix("err_"): r[k] for k in r if k.startswith("err_")},
        "wrk_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "wrk_text": out.split("BENCH_JSON")[0].strip(),
    }


# --------------------------------------------------------------------------- servers
@dataclass
class Server:
    name: str
    label: str
    kind: str  # "cd4ml" body ({...} / [...]) or "mlflow" ({"dataframe_records": [...]})
    path: str
    command: list[str]
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    optional: bool = False

    def body(self, records: dict | list) -> bytes:
        if self.kind == "mlflow":
            return json.dumps({"dataframe_records": records if isinstance(records, list) else [records]}).encode()
        return json.dumps(records).encode()


@dataclass(frozen=True)
class Answers:
    """A server's answer to n records in a form every server shares: `values` flat, per record the
    prediction (regression) or the class probabilities in class order (binary); `labels` the decided
    classes, None where the server answers none (mlflow's pyfunc gives the probabilities only)."""

    values: list[float]
    labels: list[Any] | None


def read_answers(kind: str, task: str, doc: dict[str, Any], single: bool) -> Answers:
    if kind == "mlflow":  # {"predictions": the pyfunc's (n,) predictions or (n, 2) probabilities}
        rows = doc["predictions"]
        return Answers([float(v) for row in rows for v in (row if task == "binary" else [row])], None)
    if task == "binary":  # probabilities: {class name: p} per record, in class order
        probabilities = [doc["probabilities"]] if single else doc["probabilities"]
        labels = [doc["prediction"]] if single else doc["predictions"]
        return Answers([float(v) for p in probabilities for v in p.values()], labels)
    return Answers([float(doc["prediction"])] if single else [float(p) for p in doc["predictions"]], None)


def sane(answers: Answers, task: str, n: int) -> bool:
    """Regression: n finite, non-negative predictions; binary: n pairs of probabilities summing to 1."""
    v = answers.values
    if task == "binary":
        pairs = list(zip(v[::2], v[1::2]))
        return (len(v) == 2 * n and all(0 <= p <= 1 and 0 <= q <= 1 and abs(p + q - 1) <= 1e-9 for p, q in pairs)
                and (answers.labels is None or len(answers.labels) == n))
    return len(v) == n and all(math.isfinite(p) and p >= 0 for p in v)


def servers(project: Path, model: str, tracking_uri: str, workers2: bool, inline_project: Path) -> list[Server]:
    """`inline_project`: a copy of `project` with `serving.offload_rows: 0` (see `inline_copy`)."""
    mlflow_env = {"MLFLOW_TRACKING_URI": tracking_uri}
    serve = [str(BIN / "cd4ml"), "serve", "--host", "127.0.0.1", "--port", "{port}", "-C"]
    cd4ml = [*serve, str(project)]
    mlflow = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}@champion", "--env-manager", "local",
              "-h", "127.0.0.1", "-p", "{port}"]
    out = [
        Server("cd4ml", "cd4ml serve (log on)", "cd4ml", "/predict", cd4ml),
        Server("cd4ml-nolog", "cd4ml serve --no-log", "cd4ml", "/predict", [*cd4ml, "--no-log"]),
        # The speed trick of serve/batching.py switched off: does predicting on a worker thread matter?
        Server("cd4ml-inline", "cd4ml serve (log on), offload_rows 0", "cd4ml", "/predict",
               [*serve, str(inline_project)]),
        Server("mlflow", "mlflow models serve", "mlflow", "/invocations", [*mlflow, "--workers", "1"], env=mlflow_env),
        Server("floor", "floor (FastAPI + booster)", "cd4ml", "/predict",
               [sys.executable, str(HERE / "floor_app.py"), "--port", "{port}", "--model", model],
               env={**mlflow_env, "OMP_NUM_THREADS": "1"}),
        # The floor doing the one step every service of this model must do per request: its features.
        Server("floor-features", "floor + per-request features", "cd4ml", "/predict",
               [sys.executable, str(HERE / "floor_app.py"), "--port", "{port}", "--model", model,
                "--features-per-request"], env={**mlflow_env, "OMP_NUM_THREADS": "1"}),
    ]
    if workers2:
        out += [
            Server("cd4ml-2w", "cd4ml serve (log on) 2 workers", "cd4ml", "/predict", [*cd4ml, "--workers", "2"],
                   workers=2, optional=True),
            Server("mlflow-2w", "mlflow models serve 2 workers", "mlflow", "/invocations", [*mlflow, "--workers", "2"],
                   workers=2, env=mlflow_env, optional=True),
        ]
    return out


class Running:
    """One started server: its process group, sampler and log file."""

    def __init__(self, server: Server, scratch: Path) -> None:
        self.server = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{server.path}"
        self.log_path = scratch / f"{server.name}.log"
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **server.env}
        cmd = [c.replace("{port}", str(self.port)) for c in server.command]
        self.command = cmd
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # own process group: stopped as one
        self.sampler = TreeSampler(self.proc.pid)
        self.sampler.start()

    def wait_ready(self, client: httpx.Client, timeout: float = 120.0) -> float:
        """Seconds from process start to the first 200 answer to a one-record prediction."""
        body = self.server.body(RECORD)
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                r = client.post(self.url, content=body, headers={"Content-Type": "application/json"}, timeout=5)
                if r.status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.server.name} not answering after {timeout:.0f} s: {self.tail()}")

    def settle(self, timeout: float = 30.0) -> float:
        """Wait until the tree is idle (every worker has loaded), up to `timeout`; returns seconds waited."""
        t0 = time.perf_counter()
        before = self.sampler.cpu()
        while time.perf_counter() - t0 < timeout:
            time.sleep(0.5)
            now = self.sampler.cpu()
            if now - before < 0.05:
                break
            before = now
        return time.perf_counter() - t0

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> None:
        self.sampler.sample()
        self.sampler.stop()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # workers may outlive the parent by a moment; the group is ours alone
        for _ in range(50):
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def verify(run: Running, client: httpx.Client, task: str, reference: dict[str, Answers] | None) -> dict[str, Any]:
    """200 + `sane` answers of the right count; the same numbers as `reference` to 1e-9 (binary: both
    probabilities) and the same decided classes where both answer them."""
    s = run.server
    out: dict[str, Answers] = {}
    for key, records, single in (("single", RECORD, True), ("batch", batch_records(), False)):
        r = client.post(run.url, content=s.body(records), headers={"Content-Type": "application/json"}, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"{s.name}: {key} answered {r.status_code}: {r.text[:500]}")
        answers = read_answers(s.kind, task, r.json(), single)
        want = 1 if single else BATCH
        if not sane(answers, task, want):
            raise RuntimeError(f"{s.name}: {key} answer is not {want} sane {task} prediction(s): "
                               f"{answers.values[:6]} {(answers.labels or [])[:3]}")
        out[key] = answers
    width = 2 if task == "binary" else 1
    # `prediction`: the single record's prediction, or for binary its positive class's probability
    checks: dict[str, Any] = {"status": 200, "prediction": out["single"].values[-1],
                              "batch_first": out["batch"].values[: 3 * width], "sane": True}
    if out["single"].labels is not None:
        checks["label"] = out["single"].labels[0]
    if reference is not None:
        ok = True
        for key in ("single", "batch"):
            diff = max(abs(a - b) for a, b in zip(out[key].values, reference[key].values))
            checks[f"max_abs_diff_vs_cd4ml_{key}"] = diff
            ok = ok and diff <= 1e-9
        if out["batch"].labels is not None and reference["batch"].labels is not None:
            checks["same_classes_as_cd4ml"] = all(out[k].labels == reference[k].labels for k in ("single", "batch"))
            ok = ok and checks["same_classes_as_cd4ml"]
        checks["same_as_cd4ml"] = ok
        if not ok:
            raise RuntimeError(f"{s.name}: predictions differ from cd4ml serve: {checks}")
    return {**checks, "_preds": out}


POINTS = [  # name, body, wrk threads, connections
    ("single_c1", "single", 1, 1),
    ("single_c16", "single", 2, 16),
    ("batch100_c16", "batch", 2, 16),
]


class Bench:
    """One server for the whole benchmark: started, checked and warmed once, then measured in rounds."""

    def __init__(self, server: Server, scratch: Path, wrk: str, task: str) -> None:
        self.server = server
        self.wrk = wrk
        self.task = task
        self.scripts = {kind: write_lua(scratch, f"{server.name}-{kind}",
                                        server.body(RECORD if kind == "single" else batch_records()))
                        for kind in ("single", "batch")}
        self.res: dict[str, Any] = {"label": server.label, "workers": server.workers, "load_before": loadavg(),
                                    "rounds": {name: [] for name, *_ in POINTS}}
        self.run: Running | None = None

    @property
    def ok(self) -> bool:
        return self.run is not None and "error" not in self.res

    def first_start(self, scratch: Path, remembered: list[Path]) -> None:
        """Start once with no remembered champion, as on a new host (the registry decides), and stop."""
        for f in remembered:
            f.unlink(missing_ok=True)
        log(f"{self.server.name}: first start, no remembered champion")
        run = Running(self.server, scratch)
        try:
            with httpx.Client() as client:
                self.res["ready_first_start_s"] = round(run.wait_ready(client), 3)
            log(f"{self.server.name}: answering after {self.res['ready_first_start_s']:.2f} s")
        except Exception as exc:
            self.fail(exc)
        finally:
            run.stop()

    def start(self, scratch: Path, warmup: float, reference: dict[str, Answers] | None) -> None:
        s, res = self.server, self.res
        log(f"{s.name}: starting {s.label}")
        self.run = run = Running(s, scratch)
        res["command"] = " ".join(run.command)
        try:
            with httpx.Client() as client:
                res["ready_s"] = round(run.wait_ready(client), 3)
                res["ready_cpu_s"] = round(run.sampler.cpu(), 2)
                res["ready_rss_mb"] = round(run.sampler.peak_rss / 2**20, 1)
                log(f"{s.name}: answering after {res['ready_s']:.2f} s")
                res["settle_s"] = round(run.settle(), 2)
                checks = verify(run, client, self.task, reference)
            res["preds"] = checks.pop("_preds")
            res["verify"] = checks
            run_wrk(self.wrk, run.url, self.scripts["single"], 2, 16, warmup)  # warm-up, not recorded
            if s.name == "cd4ml" and PROFILE.get("enabled"):
                res["profile"] = profile(run, self.wrk, self.scripts["single"], PROFILE["seconds"], PROFILE["out"])
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        self.res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{self.server.name}: FAILED: {self.res['error']}")

    def measure(self, name: str, kind: str, threads: int, conns: int, seconds: float) -> None:
        """One wrk point of one round."""
        run = self.run
        assert run is not None
        try:
            cpu0, sys0, t0 = run.sampler.cpu(), psutil.cpu_times(), time.perf_counter()
            p = run_wrk(self.wrk, run.url, self.scripts[kind], threads, conns, seconds)
            wall, cpu1, sys1 = time.perf_counter() - t0, run.sampler.cpu(), psutil.cpu_times()
        except Exception as exc:
            self.fail(exc)
            return
        busy = (sum(sys1) - sys1.idle - sys1.iowait) - (sum(sys0) - sys0.idle - sys0.iowait)
        p["server_cpu_s"] = round(cpu1 - cpu0, 2)
        p["server_cores"] = round((cpu1 - cpu0) / wall, 2)
        p["server_cpu_ms_per_req"] = round((cpu1 - cpu0) * 1000 / max(p["requests"], 1), 3)
        p["machine_busy_cores"] = round(busy / wall, 2)
        # CPU spent by neither the server nor wrk during the point: other load on the machine
        p["other_cores"] = round(max(busy - (cpu1 - cpu0) - p["wrk_cpu_s"], 0) / wall, 2)
        p["loadavg_after"] = loadavg()
        if kind == "batch":
            p["rows_per_s"] = round(p["req_per_s"] * BATCH, 1)
        self.res["rounds"][name].append(p)
        log(f"{self.server.name}: {name}: {p['req_per_s']:.0f} req/s, p50 {p['p50_ms']:.2f} ms, "
            f"p99 {p['p99_ms']:.2f} ms, errors {p['errors']}, server {p['server_cores']} cores, "
            f"other load {p['other_cores']} cores")
        if p["errors"]:
            log(f"{self.server.name}: WARNING {p['errors']} errors in {name}: {p['errors_detail']}")

    def stop(self) -> dict[str, Any]:
        res, run = self.res, self.run
        res["points"] = {name: combine(rounds) for name, rounds in res["rounds"].items() if rounds}
        if run is not None:
            run.stop()
            res["cpu_s_total"] = round(sum(run.sampler.cpu_by_pid.values()), 2)
            res["peak_rss_mb"] = round(run.sampler.peak_rss / 2**20, 1)
            res["peak_processes"] = run.sampler.peak_procs
        res["load_after"] = loadavg()
        return res


class BoosterCeiling:
    """The champion's LightGBM booster alone, in this process, on the batch's 100 feature rows
    (one thread, no HTTP): the most rows/s any one-worker server of this model can answer."""

    def __init__(self, proj: Any, scratch: Path) -> None:
        from cd4ml.release.estimators import Classifier
        from cd4ml.release.registry import Registry
        from cd4ml.serve.schema import RequestSchema

        registry = Registry.for_project(proj)
        release = registry.load(str(registry.champion().version), scratch / "release-cache")
        schema = RequestSchema(proj.config)
        self.X = release.features_checked(schema.to_batch(schema.validate(batch_records())))[0]
        estimator = release.estimator
        # A classifier's booster gives P(positive) alone, as the floor calls it (no (n, 2) columns)
        self.booster = estimator.model if isinstance(estimator, Classifier) else estimator
        self.res: dict[str, Any] = {"label": "booster.predict alone, in-process (ceiling)", "workers": 1,
                                    "rounds": {"batch100_c16": []}}

    def measure(self, seconds: float) -> None:
        self.booster.predict(self.X)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            self.booster.predict(self.X)
            n += 1
        rate = n * len(self.X) / (time.perf_counter() - t0)
        rounds = self.res["rounds"]["batch100_c16"]
        rounds.append({"rows_per_s": round(rate, 1)})
        self.res["points"] = {"batch100_c16": {"rows_per_s": round(statistics.median(r["rows_per_s"] for r in rounds), 1)}}
        log(f"booster-only: {rate:,.0f} rows/s on the batch's {len(self.X)} rows")


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A point over its rounds: medians of rates and latencies, totals of counts, CPU per request overall."""
    med = lambda key: round(statistics.median(p[key] for p in rounds), 3)  # noqa: E731
    out = {key: med(key) for key in ("req_per_s", "p50_ms", "p99_ms", "other_cores", "server_cores")}
    if "rows_per_s" in rounds[0]:
        out["rows_per_s"] = med("rows_per_s")
    for key in ("requests", "errors"):
        out[key] = sum(p[key] for p in rounds)
    out["errors_detail"] = [p["errors_detail"] for p in rounds if p["errors"]]
    out["server_cpu_ms_per_req"] = round(sum(p["server_cpu_s"] for p in rounds) * 1000 / max(out["requests"], 1), 3)
    out["rounds"] = len(rounds)
    return out


# --------------------------------------------------------------------------- optional profile
PROFILE: dict[str, Any] = {}


def profile(run: Running, wrk: str, script: Path, seconds: float, out_dir: Path) -> dict[str, Any]:
    """py-spy on the cd4ml server under c16 load (not timed): where the request path spends its time."""
    pyspy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not pyspy:
        return {"error": "py-spy not found (pip install py-spy into the venv)"}
    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"seconds": seconds, "load": "wrk -t2 -c16, one record"}
    for fmt, path in (("raw", out_dir / "cd4ml-serve-profile.folded"),
                      ("flamegraph", out_dir / "cd4ml-serve-profile.svg")):
        spy = subprocess.Popen([pyspy, "record", "-d", f"{seconds:g}", "-r", "250", "--function", "-f", fmt,
                                "-o", str(path), "--pid", str(run.proc.pid), "--nonblocking"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        run_wrk(wrk, run.url, script, 2, 16, seconds)
        text = spy.communicate(timeout=60)[0]
        if spy.returncode != 0:
            return {"error": f"py-spy failed: {text[-1000:]}"}
        out[fmt] = path.name
    out.update(summarize_folded(out_dir / "cd4ml-serve-profile.folded"))
    return out


HANDLER = "predict (cd4ml/serve/app.py:"
BATCHER = "MicroBatcher._flush ("  # the features and the estimator: called by the event loop, not the handler
PREDICT = "Release.predict_checked ("


def summarize_folded(path: Path, top: int = 12) -> dict[str, Any]:
    """From a py-spy folded file (active samples only): the handler's share and what it calls."""
    total, handler = 0, 0
    leaf: dict[str, int] = {}
    under: dict[str, dict[str, int]] = {HANDLER: {}, PREDICT: {}}
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n_, frames = int(n), stack.split(";")
        total += n_
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n_
        for key, children in under.items():
            i = next((k for k, f in enumerate(frames) if f.startswith(key)), None)
            if i is not None:
                child = frames[i + 1] if i + 1 < len(frames) else "(own code)"
                children[child] = children.get(child, 0) + n_
        if any(f.startswith((HANDLER, BATCHER)) for f in frames):
            handler += n_

    def shares(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"frame": f, "share": round(c / max(total, 1), 3)}
                for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "handler_share": round(handler / max(total, 1), 3),
            "outside_handler_share": round(1 - handler / max(total, 1), 3),
            "handler_calls": shares(under[HANDLER]), "release_predict_calls": shares(under[PREDICT]),
            "top_self": shares(leaf)}


# --------------------------------------------------------------------------- project
def inline_copy(project: Path, scratch: Path) -> Path:
    """A copy of `project` that serves the same champion with every call predicted inline
    (`serving.offload_rows: 0`); its store and release cache are copies of the project's."""
    from cd4ml.config import edit_project_file

    copy = scratch / "inline-project"
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("predictions"))
    edit_project_file(copy, {"serving.offload_rows": 0})
    return copy


def make_project(folder: Path, task: str) -> tuple[Path, str | None]:
    """A groceries project with a champion: the template's (regression), or `to_binary` of it (then
    also the target's definition)."""
    project = folder / ("bench-groceries" if task == "regression" else f"bench-groceries-{task}")
    cd4ml = str(BIN / "cd4ml")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run_steps([([cd4ml, "init", str(project), "--example", "groceries"], folder)], env)
    definition = to_binary(project) if task == "binary" else None
    run_steps([
        (["git", "init", "-q"], project),
        (["git", "add", "-A"], project),
        (["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "init"], project),
        ([cd4ml, "data", "ingest"], project),
        ([cd4ml, "run"], project),
    ], env)
    return project, definition


def run_steps(steps: list[tuple[list[str], Path]], env: dict[str, str]) -> None:
    for cmd, cwd in steps:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"project setup failed at {' '.join(cmd)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


BINARY_TARGET = "high_sales"


def to_binary(project: Path) -> str:
    """Make a fresh groceries project a binary one on the same world and rows: `high_sales`, does a
    store sell more units of an item on a day than the median of the training period's rows (the
    rows before the holdout)? Not trivial: about half the rows either way, and the negative binomial
    noise and stock-outs of the world blur it. Written to data/sales.parquet (git-ignored) and read
    through `source: {path: ...}`; the template's features, target encodings included, unchanged.
    Returns the target's definition."""
    import pandas as pd
    import yaml

    from cd4ml.config import load_project
    from cd4ml.data.sources import read_source

    frame, _ = read_source(load_project(project))  # the template's world, as `cd4ml data ingest` reads it
    path = project / "cd4ml.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    holdout_start = frame["date"].max().normalize() - pd.Timedelta(days=cfg["split"]["holdout_days"] - 1)
    median = float(frame.loc[frame["date"] < holdout_start, "unit_sales"].median())
    frame[BINARY_TARGET] = frame["unit_sales"] > median
    (project / "data").mkdir(exist_ok=True)
    frame.drop(columns=["unit_sales", "expected_sales"]).to_parquet(project / "data" / "sales.parquet", index=False)
    with (project / ".gitignore").open("a", encoding="utf-8") as f:
        f.write("data/\n")

    columns = cfg["schema"]["columns"]
    del columns["unit_sales"], columns["expected_sales"]
    columns[BINARY_TARGET] = {"type": "bool"}
    # History features read a regression target's past values: the classifier has none.
    del cfg["oracle_column"], cfg["model"]["target_transform"], cfg["model"]["clip_min"], cfg["features"]["history"]
    cfg.update(project="groceries-binary", task="binary", source={"path": "data/sales.parquet"},
               target=BINARY_TARGET, metrics={"primary": "auc", "report": ["auc", "logloss"]})
    cfg["acceptance"]["thresholds"] = {"auc": {"min": 0.6}}
    cfg["registry"]["model_name"] = "groceries-high-sales"
    definition = f"{BINARY_TARGET} = unit_sales > {median:g}, the median of the training rows"
    path.write_text(f"# {definition}\n" + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return definition


# --------------------------------------------------------------------------- report
def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def metric(results: dict[str, Any], server: str, point: str, key: str) -> float | None:
    return results.get(server, {}).get("points", {}).get(point, {}).get(key)


def round_ratio(results: dict[str, Any], a: str, b: str, point: str, key: str) -> float | None:
    """Median over rounds of a/b measured in the same round: machine speed that drifts between
    rounds (other tenants on a shared host) cancels out of each round's ratio."""
    ra = results.get(a, {}).get("rounds", {}).get(point, [])
    rb = results.get(b, {}).get("rounds", {}).get(point, [])
    each = [x[key] / y[key] for x, y in zip(ra, rb) if x.get(key) and y.get(key)]
    return round(statistics.median(each), 3) if each else None


def summarize(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    rps = lambda a, b: round_ratio(results, a, b, "single_c16", "req_per_s")  # noqa: E731
    rows = lambda a, b: round_ratio(results, a, b, "batch100_c16", "rows_per_s")  # noqa: E731
    ratios = {
        "ratio_vs_mlflow": rps("cd4ml", "mlflow"),
        "ratio_vs_floor": rps("cd4ml", "floor"),
        "batch_ratio_vs_mlflow": rows("cd4ml", "mlflow"),
        "batch_ratio_vs_floor": rows("cd4ml", "floor"),
        "c1_ratio_vs_mlflow": round_ratio(results, "cd4ml", "mlflow", "single_c1", "req_per_s"),
        "c1_ratio_vs_floor": round_ratio(results, "cd4ml", "floor", "single_c1", "req_per_s"),
        "c1_ratio_vs_floor_features": round_ratio(results, "cd4ml", "floor-features", "single_c1", "req_per_s"),
        "ratio_vs_floor_features": rps("cd4ml", "floor-features"),
        "batch_ratio_vs_floor_features": rows("cd4ml", "floor-features"),
        "log_on_vs_off": rps("cd4ml", "cd4ml-nolog"),
        "workers2_ratio_vs_mlflow_2w": rps("cd4ml-2w", "mlflow-2w"),
        "workers2_batch_ratio_vs_mlflow_2w": rows("cd4ml-2w", "mlflow-2w"),
        "workers2_vs_workers1": rps("cd4ml-2w", "cd4ml"),
        "booster_only_batch_vs_mlflow": rows("booster-only", "mlflow"),
        "batch_vs_booster_only": rows("cd4ml", "booster-only"),
        # serve/batching.py's worker thread: on (cd4ml) against off (cd4ml-inline)
        "batch_offload_vs_inline": rows("cd4ml", "cd4ml-inline"),
        "c1_offload_vs_inline": round_ratio(results, "cd4ml", "cd4ml-inline", "single_c1", "req_per_s"),
        "c16_offload_vs_inline": rps("cd4ml", "cd4ml-inline"),
    }
    values = {**ratios, "p99_ms_c16": metric(results, "cd4ml", "single_c16", "p99_ms"),
              "ready_s": results.get("cd4ml", {}).get("ready_s"),
              "ready_first_start_s": results.get("cd4ml", {}).get("ready_first_start_s")}
    targets = {}
    for name, (desc, op, threshold) in TARGETS.items():
        v = values.get(name)
        met = None if v is None else (v >= threshold if op == ">=" else v <= threshold)
        targets[name] = {"description": desc, "value": v, "target": f"{op} {threshold:.3g}",
                         "status": "n/a" if met is None else ("met" if met else "missed")}
    return ratios, targets


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def fmt(v: Any, spec: str = ".0f") -> str:
    return "—" if v is None else format(v, spec)


def results_stem(task: str) -> str:
    """The results files' name: serving.{json,md} for the regression model, serving-<task>.* else."""
    return "serving" if task == "regression" else f"serving-{task}"


BINARY_NOTE = (
    "The model is a binary classifier of the regression benchmark's grocery world (same rows, features "
    "and requests): {target}. cd4ml and the floor answer the decided class and both probabilities; "
    "mlflow's pyfunc answers the (n, 2) probabilities. Every server's probabilities match cd4ml's to 1e-9.")


def markdown(doc: dict[str, Any]) -> str:
    m, res = doc["machine"], doc["servers"]
    task = doc["settings"].get("task", "regression")
    lines = [
        "# Serving benchmark" + ("" if task == "regression" else f": {task} classifier"),
        "",
        f"{doc['finished']} · {m['cpu_count']} CPUs ({m['cpu_model']}) · load average before "
        f"{m['load_before']} / after {m['load_after']} · {doc['settings'].get('rounds', 1)} round(s) of "
        f"{doc['settings']['seconds']:g} s per wrk point and server · "
        f"wrk on the same machine · model `{doc['settings']['model']}@champion` (version "
        f"{doc['settings'].get('model_version', '?')}) · cd4ml at "
        f"{(doc['source']['git_commit'] or '?')[:10]}"
        + (f" + {len(doc['source']['uncommitted_src_files'])} uncommitted file(s) under src/"
           if doc['source']['uncommitted_src_files'] else ""),
        "",
        "Single = one record per request; batch = 100 records per request (rows/s = req/s x 100). "
        "c1 = `wrk -t1 -c1`, c16 = `wrk -t2 -c16`. CPU = server process tree, whole life "
        "(start-up included); RSS = peak sum over the tree. `other` = CPU cores busy with neither "
        "the server nor wrk during the c16 point (other load on the machine). The last row is no server: "
        "the champion's booster alone predicting the batch's 100 rows in the benchmark's process, one "
        "thread, no HTTP: the ceiling of any one-worker server of this model.",
        "",
        *([BINARY_NOTE.format(target=doc["settings"].get("target") or f"target `{doc['settings'].get('target_column')}`"),
           ""] if task == "binary" else []),
        "| server | ready s | c1 req/s | c1 p50 ms | c1 p99 ms | c16 req/s | c16 p50 ms | c16 p99 ms | "
        "batch rows/s | batch p99 ms | CPU ms/req c16 | CPU s | peak RSS MB | other cores c16 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, r in res.items():
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} |" + " |" * 13)
            continue
        if "error" in r and "points" not in r:
            lines.append(f"| {r['label']} | failed: {one_line(r['error'])[:120]} |" + " |" * 13)
            continue
        p = r.get("points", {})
        c1, c16, b = p.get("single_c1", {}), p.get("single_c16", {}), p.get("batch100_c16", {})
        lines.append(
            f"| {r['label']} | {fmt(r.get('ready_s'), '.2f')} | {fmt(c1.get('req_per_s'))} | "
            f"{fmt(c1.get('p50_ms'), '.2f')} | {fmt(c1.get('p99_ms'), '.2f')} | {fmt(c16.get('req_per_s'))} | "
            f"{fmt(c16.get('p50_ms'), '.2f')} | {fmt(c16.get('p99_ms'), '.2f')} | {fmt(b.get('rows_per_s'))} | "
            f"{fmt(b.get('p99_ms'), '.1f')} | {fmt(c16.get('server_cpu_ms_per_req'), '.2f')} | "
            f"{fmt(r.get('cpu_s_total'), '.1f')} | {fmt(r.get('peak_rss_mb'))} | {fmt(c16.get('other_cores'), '.2f')} |")
    lines += ["", "## Ratios", ""]
    for k, v in doc["ratios"].items():
        lines.append(f"- `{k}`: {fmt(v, '.3g')}")
    lines += ["", "## Targets", "", "| target | value | wanted | status |", "|---|--:|--:|---|"]
    for name, t in doc["targets"].items():
        lines.append(f"| {t['description']} | {fmt(t['value'], '.3g')} | {t['target']} | **{t['status']}** |")
    errs = {n: r["error"] for n, r in res.items() if "error" in r}
    errs.update({n: f"skipped ({r['skipped']})" for n, r in res.items() if "skipped" in r})
    bad = {n: {k: p["errors_detail"] for k, p in r.get("points", {}).items() if p.get("errors")}
           for n, r in res.items()}
    bad = {n: v for n, v in bad.items() if v}
    if errs or bad:
        lines += ["", "## Problems", ""]
        lines += [f"- {n}: {one_line(e)[:600]}" for n, e in errs.items()]
        lines += [f"- {n}: wrk errors {v}" for n, v in bad.items()]
    prof = res.get("cd4ml", {}).get("profile")
    if prof and "samples" in prof:
        lines += ["", f"## Where cd4ml serve spends its time (py-spy, {prof['seconds']:g} s at c16, "
                  f"{prof['samples']} active samples; flame graph `{prof.get('flamegraph')}`)", "",
                  f"- {prof['handler_share']:.0%} inside the `/predict` handler and the micro-batcher's calls; "
                  f"{prof['outside_handler_share']:.0%} in the HTTP stack around it (event loop, HTTP "
                  "parsing, uvicorn, Starlette/FastAPI routing and middleware, response writing)", "",
                  "Handler's calls (share of all samples):", ""]
        lines += [f"- {t['share']:.1%} `{t['frame']}`" for t in prof["handler_calls"]]
        lines += ["", "`Release.predict`'s calls:", ""]
        lines += [f"- {t['share']:.1%} `{t['frame']}`" for t in prof["release_predict_calls"]]
        lines += ["", "Top self time:", ""]
        lines += [f"- {t['share']:.1%} `{t['frame']}`" for t in prof["top_self"]]
    lines += ["", f"Raw figures: `{results_stem(task)}.json` next to this file. Versions: "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description="Serving benchmark: cd4ml serve vs mlflow models serve vs a floor.")
    ap.add_argument("--task", choices=("regression", "binary"), default="regression",
                    help="the model served: the groceries regressor (default) or a binary classifier of the same "
                         "world; results in serving.* or serving-binary.*")
    ap.add_argument("--project", type=Path, help="a cd4ml project with a champion (default: make a fresh one)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per wrk point and round (default 4)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds; each measures every point of every server once (default 3)")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of unrecorded load before the points (wrk rounds every duration up to whole s)")
    ap.add_argument("--no-workers2", dest="workers2", action="store_false",
                    help="skip the 2-worker runs of cd4ml serve and mlflow")
    ap.add_argument("--only", help="comma-separated server names to run (cd4ml,cd4ml-nolog,mlflow,floor,...)")
    ap.add_argument("--budget", type=float, default=480.0,
                    help="seconds for the servers (project set-up not counted); optional (2-worker) servers "
                         "are skipped once they would exceed it")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="also profile cd4ml serve with py-spy for SECONDS under c16 load (not timed)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs, Lua scripts)")
    ap.add_argument("--report-only", action="store_true",
                    help="only recompute the ratios and targets of serving.json (serving-binary.json) in --out and "
                         "rewrite its .md (no servers run)")
    args = ap.parse_args()
    stem = results_stem(args.task)
    if args.report_only:
        doc = json.loads((args.out / f"{stem}.json").read_text(encoding="utf-8"))
        ratios, targets = summarize(doc["servers"])  # the ratios and targets as this script defines them now
        doc.update(ratios, ratios=ratios, targets=targets)
        (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        (args.out / f"{stem}.md").write_text(markdown(doc), encoding="utf-8")
        log(f"wrote {args.out / f'{stem}.md'}")
        return

    t_start = time.perf_counter()
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    if not Path(wrk).exists():
        raise SystemExit("wrk not found: apt-get install -y wrk")
    PROFILE.update(enabled=args.profile > 0, seconds=args.profile, out=args.out)
    load_before, uptime_before = loadavg(), subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="cd4ml-bench-"))
    log(f"scratch {scratch}; load average {load_before}")
    try:
        setup_s, definition = None, None
        if args.project:
            project = args.project.resolve()
        else:
            log(f"making a fresh groceries project, {args.task} (init, ingest, run)...")
            t0 = time.perf_counter()
            project, definition = make_project(scratch, args.task)
            setup_s = round(time.perf_counter() - t0, 1)
            log(f"project ready in {setup_s:.0f} s")
        t_bench = time.perf_counter()  # the budget counts from here: project set-up time is not ours to bound
        from cd4ml import tracking
        from cd4ml.config import load_project
        from cd4ml.release.registry import Registry

        proj = load_project(project)
        if proj.config.task.name != args.task:
            raise SystemExit(f"{project}: task {proj.config.task.name}, not {args.task} (see --task)")
        model = proj.config.registry.model_name
        uri = tracking.tracking_uri(proj)
        champion = Registry.for_project(proj).champion()
        if champion is None:
            raise SystemExit(f"{project}: model {model} has no champion (run `cd4ml run`)")
        log(f"project {project}: {model}@champion = version {champion.version}; tracking {uri}")

        only = set(args.only.split(",")) if args.only else None
        inline = inline_copy(project, scratch) if not only or "cd4ml-inline" in only else project
        chosen = [sv for sv in servers(project, model, uri, args.workers2, inline) if not only or sv.name in only]
        per_server = len(POINTS) * args.rounds * (math.ceil(args.seconds) + 1.5) + args.warmup + 20
        results: dict[str, Any] = {}
        benches: list[Bench] = []
        reference: dict[str, list[float]] | None = None
        try:
            for server in chosen:  # started one at a time: ready_s is measured on a machine otherwise idle
                if server.optional and (len(benches) + 1) * per_server > args.budget:
                    log(f"{server.name}: skipped (time budget of {args.budget:.0f} s)")
                    results[server.name] = {"label": server.label, "workers": server.workers,
                                            "skipped": f"time budget of {args.budget:.0f} s"}
                    continue
                b = Bench(server, scratch, wrk, args.task)
                benches.append(b)
                if server.name == "cd4ml":
                    b.first_start(scratch, list((proj.state_dir / "cache" / "releases").glob("*/champion-*.json")))
                b.start(scratch, args.warmup, reference if server.name != "cd4ml" else None)
                if server.name == "cd4ml" and b.ok:
                    reference = b.res["preds"]
            # Rounds: every server gets each point once per round, one after another, so a ratio of
            # two servers compares figures taken seconds apart.
            ceiling = BoosterCeiling(proj, scratch)
            for r in range(args.rounds):
                log(f"round {r + 1}/{args.rounds}")
                for name, kind, threads, conns in POINTS:
                    for b in benches:
                        if b.ok:
                            b.measure(name, kind, threads, conns, args.seconds)
                ceiling.measure(args.seconds)
                results["booster-only"] = ceiling.res
        finally:
            for b in benches:
                b.res.pop("preds", None)
                results[b.server.name] = b.stop()
        results = {**{sv.name: results[sv.name] for sv in chosen if sv.name in results},
                   **({"booster-only": results["booster-only"]} if "booster-only" in results else {})}

        ratios, targets = summarize(results)
        load_after = loadavg()
        doc = {
            "benchmark": "serving",
            "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - t_start, 1),
            "project_setup_s": setup_s,
            "bench_s": round(time.perf_counter() - t_bench, 1),
            **ratios,
            "ratios": ratios,
            "targets": targets,
            "machine": {
                "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
                "python": platform.python_version(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "load_before": load_before, "load_after": load_after,
                "uptime_before": uptime_before,
                "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                "versions": {p: version(p) for p in ("cd4ml", "mlflow", "lightgbm", "fastapi", "starlette",
                                                     "uvicorn", "pydantic", "orjson", "numpy", "pandas",
                                                     "uvloop", "httptools")} | {"wrk": wrk_version(wrk)},
            },
            "source": source_info(),
            "settings": {"task": args.task, "target_column": proj.config.target, "target": definition,
                         "seconds": args.seconds, "rounds": args.rounds, "warmup": args.warmup, "record": RECORD, "batch_size": BATCH,
                         "project": str(project) if args.project else "(fresh temp project)", "model": model,
                         "model_version": str(champion.version), "tracking_uri": uri,
                         "points": {n: {"body": k, "wrk_threads": t, "connections": c} for n, k, t, c in POINTS}},
            "servers": results,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        (args.out / f"{stem}.md").write_text(markdown(doc), encoding="utf-8")
        print()
        print(markdown(doc))
        log(f"wrote {args.out / f'{stem}.json'} and {stem}.md in {doc['wall_s']:.0f} s")
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def source_info() -> dict[str, Any]:
    """The cd4ml checkout measured (read-only git queries): commit and uncommitted files under src/."""
    root = HERE.parent

    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    changed = [ln[3:] for ln in git("status", "--porcelain", "--", "src").splitlines()]
    return {"git_commit": git("rev-parse", "HEAD") or None, "uncommitted_src_files": changed}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


if __name__ == "__main__":
    main()
