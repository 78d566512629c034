"""Where one single-record request's time goes in `cd4ml serve`, stage by stage, in process.

The service's own app (`create_app`, the prediction log on) over the groceries champion, called
through ASGI without a socket, one request at a time: the part of a request `cd4ml serve` adds to what
uvicorn and the HTTP round trip cost (the same for the floor app of `serving.py`). Each stage of the
request path is timed around the service's own functions, many requests per round; the stages are the
median microseconds per request over rounds, and `whole` the median time of a request with no timer
inside it (timers cost a little: the stages sum to a bit more).

    .venv/bin/python benchmarks/request_path.py [--project DIR] [--rounds 5] [--requests 3000]

Without --project a fresh groceries project is made in a temp folder (about a minute). Writes
benchmarks/results/request_path.json and request_path.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import orjson  # noqa: E402
from floor_app import RECORD  # noqa: E402
from serving import RESULTS, cpu_model, loadavg, log, make_project, source_info  # noqa: E402

# (stage, where it is timed): the request path of serve/app.py in order.
STAGES = [("read body + parse JSON", "read_records"), ("validate (pydantic)", "validate"),
          ("history check (horizon, cut-off)", "unforecastable"), ("column batch", "to_batch"),
          ("features (release's own code)", "features_checked"), ("predict (LightGBM)", "predict_features"),
          ("log line (queued)", "emit_many"), ("metrics", "metrics")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    project = args.project or make_project(Path(tempfile.mkdtemp(prefix="cd4ml-path-")), "regression")[0]
    before = loadavg()
    rounds = asyncio.run(measure(project, args.rounds, args.requests))
    summary = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    doc = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "cpu": cpu_model(), "load_before": before, "load_after": loadavg(), "source": source_info(),
           "requests": args.requests, "rounds": rounds, "summary_us": summary, "record": RECORD}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "request_path.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "request_path.md").write_text(markdown(doc), encoding="utf-8")
    log(f"wrote {args.out / 'request_path.md'}")


async def measure(project: Path, rounds: int, n: int) -> list[dict[str, float]]:
    from cd4ml.config import load_project
    from cd4ml.serve import app as service_app

    app = service_app.create_app(load_project(project), log_predictions=True, poll_seconds=3600)
    body = orjson.dumps(RECORD)
    scope = {"type": "http", "method": "POST", "path": "/predict", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}

    async def call() -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"the service answered {sent[0]['status']}: {sent[-1].get('body', b'')[:300]!r}")

    out = []
    async with app.router.lifespan_context(app):
        service = app.state.service
        while service.watcher.current is None:
            await asyncio.sleep(0.1)
        release = service.watcher.current.release
        for _ in range(1000):
            await call()
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                await call()
            whole = (time.perf_counter() - start) / n * 1e6
            spent: collections.Counter[str] = collections.Counter()
            undo = _instrument(spent, service, release, service_app)
            try:
                for _ in range(n):
                    await call()
            finally:
                for restore in undo:
                    restore()
            out.append({**{stage: spent[key] / n / 1000 for stage, key in STAGES}, "whole": whole})
            log(f"whole request {whole:.1f} us")
    return out


def _instrument(spent: collections.Counter[str], service: Any, release: Any, module: Any) -> list[Callable[[], None]]:
    """Timers around the request path's functions (instance attributes, so nothing else sees them)."""
    undo = []

    def wrap(owner: Any, name: str, key: str, is_async: bool = False) -> None:
        original = getattr(owner, name)
        if is_async:
            async def timed_async(*a: Any, **k: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return await original(*a, **k)
                finally:
                    spent[key] += time.perf_counter_ns() - start
            setattr(owner, name, timed_async)
        else:
            def timed(*a: Any, **k: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return original(*a, **k)
                finally:
                    spent[key] += time.perf_counter_ns() - start
            setattr(owner, name, timed)
        undo.append(lambda: setattr(owner, name, original))

    wrap(module, "read_records", "read_records", is_async=True)
    wrap(service.schema, "validate", "validate")
    wrap(type(service), "unforecastable", "unforecastable")
    wrap(service.batcher, "to_batch", "to_batch")
    wrap(release, "features_checked", "features_checked")
    wrap(release, "predict_features", "predict_features")
    wrap(service.predlog, "emit_many", "emit_many")
    wrap(service.metrics, "request", "metrics")
    wrap(service.metrics, "predicted", "metrics")
    return undo


def markdown(doc: dict[str, Any]) -> str:
    s = doc["summary_us"]
    timed = sum(s[stage] for stage, _ in STAGES)
    rows = [f"| {stage} | {s[stage]:.1f} | {100 * s[stage] / s['whole']:.0f}% |" for stage, _ in STAGES]
    return "\n".join([
        "# One single-record request, stage by stage", "",
        f"{doc['when']} · {doc['cpus']} CPUs ({doc['cpu']}) · load average before {doc['load_before']} / after "
        f"{doc['load_after']} · {len(doc['rounds'])} rounds of {doc['requests']} requests · `create_app` "
        "(prediction log on) called through ASGI in process, no socket · groceries champion · record "
        f"{json.dumps(doc['record'])}", "",
        "| stage | us per request | of the whole |", "|---|--:|--:|", *rows,
        f"| the rest (routing, the loop's turn for the micro-batcher, answer JSON, ids) | "
        f"{s['whole'] - timed:.1f} | {100 * (s['whole'] - timed) / s['whole']:.0f}% |",
        f"| **whole request, untimed** | **{s['whole']:.1f}** | 100% |", "",
        "The floor app of `serving.py` does, of these, only parsing the body, predicting precomputed rows and "
        "writing the answer. Raw figures: `request_path.json` next to this file.", ""])


if __name__ == "__main__":
    main()
