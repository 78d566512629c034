"""Start-up benchmark: how long light `cd4ml` commands take, and what `cd4ml --help` imports.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--out benchmarks/results]

Each command runs as a child process `--repeats` times (after one untimed warm-up, so the file
cache is warm); the median wall time is reported:

- `cd4ml --help`, `cd4ml run --help`: help must not pay for MLflow, pandas or LightGBM;
- `cd4ml data versions` on a small ingested grocery project: reads only the Delta log;
- `python -c "import cd4ml.cli"`: the floor every command pays;
- a new project's MLflow store: a child that imports MLflow and opens a store at a new path, made by
  MLflow's migrations (the baseline), or copied from the empty store cached once (cd4ml.empty_store,
  what every project after a machine's first gets), and, as the floor, one that opens an existing store.

Then `python -X importtime -m cd4ml.cli --help` lists the heavy libraries `cd4ml --help` imports
(none is the goal) and the slowest top-level imports. Target: `cd4ml --help` <= 0.5 s.
Writes startup.json and startup.md to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import cd4ml_cmd, child_env, machine_line  # noqa: E402 - benchmarks/ is the script folder on sys.path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
HEAVY = ("mlflow", "pandas", "lightgbm", "sklearn", "deltalake", "pandera", "matplotlib", "fastapi", "uvicorn",
         "pyarrow", "numpy", "scipy", "duckdb")
HELP_MAX_S = 0.5
SMALL_WORLD = {"n_stores": 3, "n_items": 40, "seed": 7, "start": "2024-01-01", "end": "2024-03-31"}


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed(cmd: list[str], repeats: int, cwd: Path | None = None) -> dict[str, Any]:
    run(cmd, cwd)  # warm-up: file cache, .pyc files
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(cmd, cwd)
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs_s": [round(t, 3) for t in times]}


def small_project(root: Path) -> Path:
    from cd4ml.config import edit_project_file

    run([*cd4ml_cmd(), "init", str(root), "--example", "groceries"])
    edit_project_file(root, {"source.options": SMALL_WORLD, "feature_tests": None})
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark project"]):
        run(["git", *args], cwd=root)
    run([*cd4ml_cmd(), "data", "ingest", "-C", str(root)])
    return root


# `python -c` programs for the store rows: a new store each time (a fresh name), or the same one.
_NEW_STORE = ("import sys, uuid; from pathlib import Path; from mlflow import MlflowClient; "
              "db = Path(sys.argv[1]) / f'{uuid.uuid4().hex}.db'; {seed}"
              "MlflowClient(tracking_uri=f'sqlite:///{db}').search_experiments()")
STORE_PROGRAMS = {
    "new store, made by MLflow": _NEW_STORE.replace("{seed}", ""),
    "new store, copied (cd4ml.empty_store)": _NEW_STORE.replace(
        "{seed}", "from cd4ml import empty_store; assert empty_store.seed(db); "),
    "existing store, opened": ("import sys; from mlflow import MlflowClient; "
                               "MlflowClient(tracking_uri=f'sqlite:///{sys.argv[1]}/same.db').search_experiments()"),
}


def import_profile() -> dict[str, Any]:
    """`python -X importtime -m cd4ml.cli --help`: heavy libraries imported, slowest top-level imports."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cd4ml.cli", "--help"], env=child_env(),
                          capture_output=True, text=True)
    cumulative: dict[str, int] = {}
    modules = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        raw = line.split("|")  # "import time: <self us> | <cumulative us> | <indented module>"
        cum_us = int(raw[1].strip())
        name = raw[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        name = name.strip()
        modules.append(name)
        if depth == 0:  # a top-level import: its cumulative time includes everything it pulled in
            cumulative[name] = cumulative.get(name, 0) + cum_us
    top = {name.split(".")[0] for name in modules}
    slowest = sorted(cumulative.items(), key=lambda kv: -kv[1])[:12]
    return {"exit": proc.returncode, "modules": len(modules),
            "heavy_imported": sorted(top.intersection(HEAVY)),
            "heavy_checked": list(HEAVY),
            "slowest_top_level_ms": {name: round(us / 1000, 1) for name, us in slowest},
            "total_ms": round(sum(cumulative.values()) / 1000, 1)}


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    imp = doc["imports"]
    lines = [
        "# Start-up benchmark",
        "",
        f"{machine_line(m)}. Median of {doc['repeats']} child processes after a warm-up.",
        "",
        "| command | median (s) | min | max |",
        "|---|---:|---:|---:|",
        *[f"| `{name}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} |"
          for name, r in doc["commands"].items()],
        "",
        "## Target",
        "",
        "| target | value | |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['value']} | {'met' if t['met'] else '**missed**'} |" for t in doc["targets"]],
        "",
        doc["store_note"],
        "",
        "## What `cd4ml --help` imports (`python -X importtime -m cd4ml.cli --help`)",
        "",
        f"{imp['modules']} modules. Heavy libraries imported: "
        f"{', '.join(imp['heavy_imported']) or 'none'} (checked: {', '.join(imp['heavy_checked'])}).",
        "",
        "| slowest top-level imports | cumulative ms |",
        "|---|---:|",
        *[f"| {name} | {ms} |" for name, ms in imp["slowest_top_level_ms"].items()],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    load_start = [round(x, 2) for x in os.getloadavg()]
    cli = cd4ml_cmd()
    commands: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cd4ml-bench-startup-") as tmp:
        root = small_project(Path(tmp) / "shop")
        for name, cmd in (
            ("cd4ml --help", [*cli, "--help"]),
            ("cd4ml run --help", [*cli, "run", "--help"]),
            ("cd4ml data versions", [*cli, "data", "versions", "-C", str(root)]),
            ('python -c "import cd4ml.cli"', [sys.executable, "-c", "import cd4ml.cli"]),
        ):
            commands[name] = timed(cmd, args.repeats)
            print(f"{name}: median {commands[name]['median_s']:.3f} s", flush=True)
        stores = Path(tmp) / "stores"
        stores.mkdir()
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the warm-up makes the cached store
        for name, program in STORE_PROGRAMS.items():
            commands[name] = timed([sys.executable, "-c", program, str(stores)], args.repeats)
            print(f"{name}: median {commands[name]['median_s']:.3f} s", flush=True)
    imports = import_profile()
    help_s = commands["cd4ml --help"]["median_s"]
    targets = [{"target": f"`cd4ml --help` <= {HELP_MAX_S} s (median)", "value": f"{help_s:.3f} s",
                "met": help_s <= HELP_MAX_S},
               {"target": "`cd4ml --help` imports none of the heavy libraries",
                "value": ", ".join(imports["heavy_imported"]) or "none", "met": not imports["heavy_imported"]}]
    made, copied = (commands[name]["median_s"] for name in list(STORE_PROGRAMS)[:2])
    opened = commands["existing store, opened"]["median_s"]
    store_note = (f"A new project's store: copied {copied:.2f} s against made by MLflow {made:.2f} s "
                  f"({copied / made:.2f}x; {made - copied:.2f} s less); opening an existing store: {opened:.2f} s. "
                  "Each includes the child's start and MLflow's import.")
    print(store_note)
    doc = {"machine": {"when": dt.datetime.now().isoformat(timespec="seconds"),
                       "python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count(), "loadavg_start": load_start,
                       "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]},
           "repeats": args.repeats, "commands": commands, "imports": imports, "targets": targets,
           "store_note": store_note}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md = markdown(doc)
    (args.out / "startup.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
