"""Explanations on request: `POST /predict?explain=true` against the plain request, one record at a time.

One `cd4ml serve` (log on, 1 worker, 127.0.0.1) of the groceries example's champion; one client
sending one record per request and waiting for each answer (concurrency 1: the latency a user sees).
In each round, `--requests` plain requests, then as many with `?explain=true`, then plain again, so a
machine whose speed drifts shows it in the two plain halves; figures are medians over rounds and the
ratio is the median of each round's ratio (explain p50 / plain p50). Every explained answer is checked:
its prediction equals the plain one's and its shares add up to its raw score.

    .venv/bin/python benchmarks/explain.py [--project DIR] [--rounds 5] [--requests 300]

Without --project a fresh groceries project is made in a temp folder (about a minute). Writes
benchmarks/results/explain.json and explain.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from floor_app import RECORD
from serving import BIN, RESULTS, cpu_model, free_port, loadavg, log, make_project, source_info


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def timed(client: httpx.Client, url: str, n: int, plain: float | None) -> list[float]:
    """Milliseconds of `n` sequential requests; with `plain` (the plain answer) each answer is checked."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.post(url, json=RECORD)
        out.append((time.perf_counter() - start) * 1000.0)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
        if plain is not None:
            doc = response.json()
            shares = doc["explanation"]
            total = shares["base"] + sum(shares["contributions"].values())
            if doc["prediction"] != plain or abs(total - shares["raw"]) > 1e-9:
                raise SystemExit(f"explained answer differs: {doc}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a cd4ml project with a champion (default: make a fresh one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=300, help="requests per kind and round")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cd4ml-explain-"))
    project = args.project or make_project(scratch, "regression")[0]
    port = free_port()
    log_file = (scratch / "serve.log").open("wb")
    server = subprocess.Popen([str(BIN / "cd4ml"), "serve", "--host", "127.0.0.1", "--port", str(port), "-C",
                               str(project)], stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    before = loadavg()
    rounds: list[dict[str, Any]] = []
    try:
        url = f"http://127.0.0.1:{port}/predict"
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.post(url, json=RECORD).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"cd4ml serve did not answer; see {scratch / 'serve.log'}")
                time.sleep(0.2)
            plain_answer = client.post(url, json=RECORD).json()["prediction"]
            timed(client, url, 200, None)  # warm-up of both paths
            timed(client, f"{url}?explain=true", 200, plain_answer)
            for r in range(args.rounds):
                first = timed(client, url, args.requests, None)
                explained = timed(client, f"{url}?explain=true", args.requests, plain_answer)
                second = timed(client, url, args.requests, None)
                plain = first + second
                rounds.append({"plain_p50_ms": statistics.median(plain), "plain_p99_ms": percentile(plain, 0.99),
                               "explain_p50_ms": statistics.median(explained),
                               "explain_p99_ms": percentile(explained, 0.99),
                               "plain_halves_p50_ms": [statistics.median(first), statistics.median(second)]})
                rounds[-1]["ratio_p50"] = rounds[-1]["explain_p50_ms"] / rounds[-1]["plain_p50_ms"]
                log(f"round {r + 1}: plain p50 {rounds[-1]['plain_p50_ms']:.3f} ms, explain p50 "
                    f"{rounds[-1]['explain_p50_ms']:.3f} ms ({rounds[-1]['ratio_p50']:.2f}x)")
    finally:
        server.terminate()
        server.wait(30)
    summary = {k: statistics.median(r[k] for r in rounds)
               for k in ("plain_p50_ms", "plain_p99_ms", "explain_p50_ms", "explain_p99_ms", "ratio_p50")}
    doc = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "cpu": cpu_model(), "load_before": before, "load_after": loadavg(), "source": source_info(),
           "rounds": rounds, "summary": summary, "requests": args.requests, "record": RECORD}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (args.out / "explain.md").write_text(markdown(doc), encoding="utf-8")
    log(f"wrote {args.out / 'explain.md'}")


def markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    return "\n".join([
        "# Explanations on request", "",
        f"{doc['when']} · {doc['cpus']} CPUs ({doc['cpu']}) · load average before {doc['load_before']} / after "
        f"{doc['load_after']} · {len(doc['rounds'])} rounds of {doc['requests']} requests per kind · cd4ml serve (log on, "
        "1 worker) of the groceries champion · one client, one record per request (httpx, keep-alive) · "
        f"record {json.dumps(doc['record'])}", "",
        "| request | p50 ms | p99 ms |", "|---|--:|--:|",
        f"| `POST /predict` | {s['plain_p50_ms']:.3f} | {s['plain_p99_ms']:.3f} |",
        f"| `POST /predict?explain=true` | {s['explain_p50_ms']:.3f} | {s['explain_p99_ms']:.3f} |", "",
        f"Explain vs plain, p50: **{s['ratio_p50']:.2f}x** (median of the rounds' ratios). Each explained answer "
        "was checked: the same prediction as the plain one, shares adding up to its raw score.", "",
        "Raw figures: `explain.json` next to this file.", ""])


if __name__ == "__main__":
    main()
