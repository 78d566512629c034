"""Pipeline benchmark: `cd4ml data ingest` and `cd4ml run` on the grocery world at growing sizes.

    .venv/bin/python benchmarks/pipeline.py [--sizes 0.1,1,5] [--out benchmarks/results] [--stages] [--repeats 3]

For each size (millions of rows) it creates a grocery project in a temp folder (`cd4ml init
--example groceries`, the world resized, no feature tests, git init + commit) and measures, each
in its own child process so each has its own peak memory (the larger of ru_maxrss from wait4, its
largest process, and the sum of RSS over its process tree sampled every 20 ms: a run's child
processes count with it while they run):

- `cd4ml data ingest`: wall time, peak RSS;
- `cd4ml run --json`: wall time, peak RSS, the pipeline's own stage seconds;
- `cd4ml run --json` again with nothing changed, 3 times: it must be recognised as a rerun of the
  first run (`skipped_as`) and skipped; wall time (the median);
- a bare fit: the same feature matrix built with cd4ml's own code (table version, time_split,
  take_snapshot, FeaturePlan.fit/transform; row-major here, column-major in the run), then only `LGBMRegressor(**the same params).fit(...)`
  timed: the floor the pipeline's cost is compared with. cd4ml fits through `lightgbm.train`; the
  bare fit's model file must be byte-identical to the run's registered one, or the benchmark stops.
  LightGBM's import (with scikit-learn, as LGBMRegressor needs) is timed apart. The bare fit runs
  twice: in OpenMP's defaults, and with OMP_WAIT_POLICY=PASSIVE (`cd4ml run` chooses one of the two from
  the machine's load: cd4ml/runtime.py). At 1M rows the first run and both bare fits are repeated
  (--repeats, 3 by default; each run on a fresh copy of the ingested project), interleaved, and the time
  target takes the median of the repeats' ratios: the machine's speed drifts by tens of percent within
  minutes;
- next to one busy process (a deterministic CPU-burning child, `BURNER`), at 1M rows: a first run on a
  fresh copy and the PASSIVE bare fit, --busy-repeats times, interleaved with the quiet repeats. It also reports the loaded table's in-memory size
  (`memory_usage(deep=True)`), the yardstick for peak memory, and the feature matrix's;
- with --stages, an in-process profile of a copy of the project: ingest's read / validate / write
  and each run stage, with peak RSS per step (sampled every 10 ms).

The grocery project has history features (lags and windows of each store and item's sales): the bare
fit's matrix includes them, built from the whole table as the run builds them.

Writes pipeline.json and pipeline.md to --out with the targets: run at 1M rows <= 1.5x the
default-settings bare fit; next to one busy process, the run's fit stage <= 1.2x the PASSIVE bare fit
next to it; time growth from 1M to 5M rows no faster than linear; peak memory <= 4x the table size;
a skipped rerun <= 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
MARK = "@@BENCH@@"

# (n_stores, n_items, days) per size in millions of rows: rows = stores x items x days exactly.
KNOWN_SIZES: dict[float, tuple[int, int, int]] = {0.1: (10, 100, 100), 1.0: (20, 100, 500), 5.0: (50, 200, 500)}
START = dt.date(2023, 1, 1)

# What each command imports before it touches data: the fixed part of its peak RSS.
BASELINE_IMPORTS = {
    "ingest": "import cd4ml.cli, cd4ml.data.ingest, cd4ml.data.validation, cd4ml.examples.groceries, pandera, deltalake",
    # A run imports MLflow only once its model trains, after the features (its peak) are built.
    "run": "import cd4ml.cli, cd4ml.pipeline.run, cd4ml.tracking, deltalake; "
           "from cd4ml.release.estimators import import_lightgbm; import_lightgbm()",
}

RUN_VS_BARE_MAX = 1.5
PEAK_VS_TABLE_MAX = 4.0
RERUN_MAX_S = 5.0
RERUNS = 3
# The machine's speed drifts by tens of percent within minutes: at the size of the time target, the
# run and both bare fits are repeated (interleaved, each run on a fresh copy of the ingested project)
# and the target takes the median of the repeats' ratios.
TARGET_SIZE = 1.0
TIMING_REPEATS = 3


def world_for(size: float) -> tuple[int, int, int]:
    if size in KNOWN_SIZES:
        return KNOWN_SIZES[size]
    stores, items = (10, 100) if size < 0.5 else (20, 100) if size < 2 else (50, 200)
    days = round(size * 1e6 / (stores * items))
    if days < 40:  # the groceries holdout is 28 days
        raise SystemExit(f"size {size}M is too small: at least 40 days of {stores} x {items} are needed")
    return stores, items, days


def cd4ml_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("cd4ml")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cd4ml.cli"]


def child_env() -> dict[str, str]:
    # Without OpenMP settings of ours: each run chooses its own, and each bare fit gets its POLICIES entry.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *OPENMP_VARS)}
    return {**env, "COLUMNS": "200", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def _tree_rss_peak(pid: int, done: threading.Event, peak: list[float]) -> None:
    """Largest sum of RSS over process `pid` and its descendants, sampled every 20 ms until `done`."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not done.wait(0.02):
        total = 0
        try:
            for p in (root, *root.children(recursive=True)):
                try:
                    # A child caught between fork and exec still shows its parent's command line, and
                    # its parent's pages as its own: counted, it would add the parent's RSS twice.
                    if p is not root and p.cmdline() == p.parent().cmdline():
                        continue
                    total += p.memory_info().rss
                except (psutil.Error, AttributeError):  # ended between the listing and the reading
                    pass
        except psutil.Error:
            return
        peak[0] = max(peak[0], total / 2**20)


def measure(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd` to completion (in `env`, by default `child_env()`): wall and CPU seconds (user + system,
    its whole tree), peak RSS (MB: the larger of its largest process's and the sampled sum over its
    process tree, so child processes running at the same time count together), exit code, output."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env or child_env(), text=True)
        done, tree_peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=_tree_rss_peak, args=(proc.pid, done, tree_peak), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        largest = usage.ru_maxrss / 1024
        return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "peak_mb": round(max(largest, tree_peak[0]), 1), "largest_process_peak_mb": round(largest, 1),
                "tree_peak_mb": round(tree_peak[0], 1), "exit": proc.returncode,
                "load1": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "stdout": out.read(), "stderr": err.read()}


def _check(result: dict[str, Any], what: str, ok: tuple[int, ...] = (0,)) -> None:
    if result["exit"] not in ok:
        raise SystemExit(f"{what} failed (exit {result['exit']}):\n{result['stdout'][-3000:]}\n"
                         f"{result['stderr'][-3000:]}")


def _marked(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.rpartition(MARK)[2])


def make_project(root: Path, stores: int, items: int, days: int) -> None:
    from cd4ml.config import edit_project_file

    _check(measure([*cd4ml_cmd(), "init", str(root), "--example", "groceries"]), "cd4ml init")
    end = START + dt.timedelta(days=days - 1)
    edit_project_file(root, {
        "source.options.n_stores": stores, "source.options.n_items": items,
        "source.options.start": START.isoformat(), "source.options.end": end.isoformat(),
        # The template's schema lists the 10 stores and 100 items of its default world.
        "schema.columns.store_nbr.categories": list(range(1, stores + 1)),
        "schema.columns.item_nbr.max": 100000 + items,
        "feature_tests": None,
    })
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark project"]):
        _check(measure(["git", *args], cwd=root), f"git {args[0]}")


# ---------------------------------------------------------------------------------------------
# Child: the bare fit


def bare_fit(root: Path) -> dict[str, Any]:
    """The pipeline's feature matrix, built with cd4ml's code; only LightGBM's fit is timed."""
    import resource

    import psutil

    from cd4ml.config import load_project
    from cd4ml.data.table import TrainingTable
    from cd4ml.features.code import take_snapshot
    from cd4ml.pipeline.stages import feature_spec, history_batch, holiday_dates
    from cd4ml.release import estimators
    from cd4ml.release.package import frame_to_batch
    from cd4ml.train.split import time_split

    t0 = time.perf_counter()
    import lightgbm as lgb  # timed apart: with scikit-learn, which the run does not import

    import_s = round(time.perf_counter() - t0, 3)
    me = psutil.Process()
    rss = lambda: round(me.memory_info().rss / 2**20, 1)  # noqa: E731
    out: dict[str, Any] = {"rss_mb": {"imported": rss()}, "import_s": import_s}
    project = load_project(root)
    cfg = project.config
    t0 = time.perf_counter()
    frame, version = TrainingTable.for_project(project).read()
    out["load_s"] = round(time.perf_counter() - t0, 3)
    out["rows"] = len(frame)
    usage = frame.memory_usage(deep=True, index=False)
    out["table_mb"] = round(usage.sum() / 2**20, 1)
    out["table_mb_by_column"] = {c: round(v / 2**20, 1) for c, v in usage.items()}
    out["table_dtypes"] = {c: str(t) for c, t in frame.dtypes.items()}
    out["rss_mb"]["table_loaded"] = rss()
    train_df, hold_df = time_split(frame, cfg.time_column, cfg.split)
    history = history_batch(cfg, frame) if cfg.history_spec else None
    del frame
    out["rows_train"], out["rows_holdout"] = len(train_df), len(hold_df)
    with tempfile.TemporaryDirectory(prefix="cd4ml-bench-") as tmp:
        t0 = time.perf_counter()
        snapshot = take_snapshot(project.root, cfg.features.custom, Path(tmp) / "code")
        transforms = snapshot.transforms()
        spec = feature_spec(cfg)
        y = transforms.forward_target(spec, train_df[cfg.target].to_numpy())
        batch = frame_to_batch(train_df)
        out["train_batch_mb"] = round(sum(v.nbytes for v in batch.values()) / 2**20, 1)
        # The run's own training matrix (its target encodings cross-fitted), not the served transform of it.
        plan, X, _ = transforms.FeaturePlan.fit_transform(
            spec, batch, y, snapshot.resolve(cfg.features.custom), holiday_dates(cfg, train_df[cfg.time_column]),
            history=transforms.SeriesHistory(spec.history, history) if spec.history else None)
        out["features_s"] = round(time.perf_counter() - t0, 3)
        out["rss_mb"]["features_built"] = rss()
        out["X_shape"], out["X_mb"] = list(X.shape), round(X.nbytes / 2**20, 1)
        categorical = plan.categorical_indices
        del batch, train_df, hold_df, history

    params = {"random_state": cfg.seed, "deterministic": True, "force_col_wise": True, "verbose": -1,
              **dict(cfg.model.params)}
    reference = estimators.make_estimator(cfg.model, cfg.seed, cfg.task).params
    if params != reference:  # the bare fit must be the pipeline's estimator, nothing else
        raise SystemExit(f"bare-fit params differ from estimators.make_estimator: {params} != {reference}")
    model = lgb.LGBMRegressor(**params)
    out["params"] = params
    out["rss_mb"]["before_fit"] = rss()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.fit(X, y, categorical_feature=categorical or "auto")
    out["fit_s"] = round(time.perf_counter() - t0, 3)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["fit_cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 3)
    out["rss_mb"]["after_fit"] = rss()
    # Compared with the run's registered model file: the run must have grown the same trees.
    out["model_sha256"] = hashlib.sha256(model.booster_.model_to_string().encode()).hexdigest()
    out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["data_version"] = version
    return out


# ---------------------------------------------------------------------------------------------
# Child: the in-process stage profile (--stages)


class _Sampler:
    """Peak RSS per named step, sampled every 10 ms by a background thread."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.step = "start"
        self.peak: dict[str, float] = {}
        self.at_start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        mb = self.proc.memory_info().rss / 2**20
        self.peak[self.step] = max(self.peak.get(self.step, 0.0), mb)

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def enter(self, step: str) -> None:
        self._sample()
        now = time.perf_counter()
        self.seconds[self.step] = self.seconds.get(self.step, 0.0) + now - self._t
        self._t = now
        self.step = step
        self.at_start[step] = self.proc.memory_info().rss / 2**20
        self._sample()

    def finish(self) -> dict[str, Any]:
        self.enter("end")
        self._stop.set()
        self._thread.join()
        return {"seconds": {k: round(v, 3) for k, v in self.seconds.items() if k != "start"},
                "rss_start_mb": {k: round(v, 1) for k, v in self.at_start.items() if k != "end"},
                "peak_mb": {k: round(v, 1) for k, v in self.peak.items() if k not in ("start", "end")}}


def stage_profile(root: Path) -> dict[str, Any]:
    """Ingest's steps and the run's stages in one process, with peak RSS per step."""
    import contextlib

    from cd4ml.config import load_project
    from cd4ml.data.sources import read_source
    from cd4ml.data.table import TrainingTable
    from cd4ml.data.validation import validate
    from cd4ml.pipeline.run import run_pipeline

    sampler = _Sampler()
    project = load_project(root)
    sampler.enter("ingest.read_source")
    frame, source = read_source(project)
    sampler.enter("ingest.validate")
    clean, report = validate(frame, project.config, existing_rows=0)
    del frame
    if not report.ok:
        raise SystemExit(f"validation failed: {report.failures}")
    sampler.enter("ingest.write")
    TrainingTable.for_project(project).write(clean, mode="overwrite", source=source)
    del clean
    sampler.enter("run.setup")  # imports, the earlier-run lookup; run_pipeline names the stages after this
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(load_project(root), on_stage=lambda name: sampler.enter(f"run.{name}"))
    out = sampler.finish()
    out["pipeline_seconds"] = result.seconds
    return out


# ---------------------------------------------------------------------------------------------
# Parent: one size, then the report


def import_baselines() -> dict[str, float]:
    """Peak RSS (MB) of a process that only imports what `cd4ml data ingest` / `cd4ml run` import."""
    out = {}
    for name, code in BASELINE_IMPORTS.items():
        r = measure([sys.executable, "-c", code])
        _check(r, f"import baseline {name}")
        out[name] = r["peak_mb"]
    return out


# The bare fit's OpenMP settings: OpenMP's own default (a plain script's fit), and threads that sleep while they
# wait, which `cd4ml run` chooses next to a busy process (cd4ml/runtime.py).
POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# The busy neighbour: one deterministic CPU-bound process (a service, a test suite) next to the run.
# It stops by itself once the benchmark is gone (killed, so its `finally` never ran): a burner left
# behind would make every later measurement on the machine a busy one.
BURNER = ("import os, sys\nparent = int(sys.argv[1])\nx = 1\nwhile os.getppid() == parent:\n"
          "    for _ in range(1_000_000):\n        x = (x * 48271) % 2147483647\n")
RUN_BUSY_VS_PASSIVE_MAX = 1.2


@contextlib.contextmanager
def busy_neighbour() -> Iterator[None]:
    """One process burning a core for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", BURNER, str(os.getpid())])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _bare_fits(root: Path, size: float, version: str, policies: tuple[str, ...] = ("default", "passive")
               ) -> dict[str, dict[str, Any]]:
    """The bare fit on `root`'s feature matrix in each of `policies` (POLICIES), one after another; each must
    grow the model the run registered as `version`."""
    run_model = next((root / ".cd4ml" / "cache" / "releases").glob(f"*/v{version}-*/artifacts/release/"
                                                                    "estimator/model.txt"))
    bares = {}
    for policy in policies:
        extra = POLICIES[policy]
        bare = measure([sys.executable, str(HERE), "--child-bare-fit", str(root)], env={**child_env(), **extra})
        _check(bare, "bare fit")
        bares[policy] = {**_marked(bare["stdout"]), "child_wall_s": bare["wall_s"],
                         "child_peak_mb": bare["peak_mb"], "load1": bare["load1"], "env": extra}
        if hashlib.sha256(run_model.read_bytes()).hexdigest() != bares[policy]["model_sha256"]:
            raise SystemExit(f"[{size}M] the bare fit's model differs from the run's ({run_model}): "
                             "the comparison would not be of the same fit")
    return bares


def _timing(run: dict[str, Any], doc: dict[str, Any], fit: dict[str, Any], fit_passive: dict[str, Any]) -> dict[str, Any]:
    return {"run_wall_s": run["wall_s"], "fit_stage_s": doc["seconds"]["fit"], "bare_fit_s": fit["fit_s"],
            "bare_fit_passive_s": fit_passive["fit_s"], "run_vs_bare_fit": round(run["wall_s"] / fit["fit_s"], 2),
            "run_vs_bare_fit_passive": round(run["wall_s"] / fit_passive["fit_s"], 2),
            "run_openmp": doc.get("openmp_wait_policy")}


def _same_policy(doc: dict[str, Any], fit: dict[str, Any], fit_passive: dict[str, Any]) -> dict[str, Any]:
    """The bare fit in the OpenMP wait policy the run (`doc`, its --json) chose."""
    return fit_passive if (doc.get("openmp_wait_policy") or {}).get("policy") == "PASSIVE" else fit


def _busy_timing(pristine: Path, again: Path, size: float) -> dict[str, Any]:
    """A first run on a fresh copy of the project, then the PASSIVE bare fit, both next to one busy process."""
    shutil.copytree(pristine, again, symlinks=True)
    try:
        with busy_neighbour():
            run = measure([*cd4ml_cmd(), "run", "--json", "-C", str(again)])
            _check(run, "cd4ml run --json (next to a busy process)", ok=(0, 3))
            doc = json.loads(run["stdout"])
            fit = _bare_fits(again, size, doc["version"], ("passive",))["passive"]
    finally:
        shutil.rmtree(again, ignore_errors=True)
    return {"run_wall_s": run["wall_s"], "fit_stage_s": doc["seconds"]["fit"], "bare_fit_passive_s": fit["fit_s"],
            "fit_stage_vs_bare_fit_passive": round(doc["seconds"]["fit"] / fit["fit_s"], 2),
            "run_vs_bare_fit_passive": round(run["wall_s"] / fit["fit_s"], 2),
            "run_openmp": doc.get("openmp_wait_policy"), "load1": run["load1"]}


def bench_size(size: float, workdir: Path, stages: bool, base: dict[str, float], repeats: int,
               busy_repeats: int) -> dict[str, Any]:
    stores, items, days = world_for(size)
    rows = stores * items * days
    root = workdir / f"shop-{rows}"
    print(f"[{size}M] project: {stores} stores x {items} items x {days} days = {rows:,} rows", flush=True)
    make_project(root, stores, items, days)

    ingest = measure([*cd4ml_cmd(), "data", "ingest", "-C", str(root)])
    _check(ingest, "cd4ml data ingest")
    print(f"[{size}M] ingest: {ingest['wall_s']:.1f} s, peak {ingest['peak_mb']:.0f} MB", flush=True)

    pristine = None
    if repeats > 1 or busy_repeats:  # each repeat's run is a first run too: on a copy of the project as ingested
        pristine = workdir / f"pristine-{rows}"
        shutil.copytree(root, pristine, symlinks=True)
    copy = None
    if stages:  # profile a copy before the measured run, so both runs start with an empty registry
        copy = workdir / f"profile-{rows}"
        shutil.copytree(root, copy, symlinks=True)

    run = measure([*cd4ml_cmd(), "run", "--json", "-C", str(root)])
    _check(run, "cd4ml run --json", ok=(0, 3))  # 3: the gate rejected the model; it still ran every stage
    doc = json.loads(run["stdout"])
    print(f"[{size}M] run: {run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB, stages {doc['seconds']}",
          flush=True)

    # Nothing changed (same data version, feature code, config): recognised and skipped. A few seconds of
    # imports and store queries, so the machine's noise is a large part of one measurement: the median of 3.
    reruns = [measure([*cd4ml_cmd(), "run", "--json", "-C", str(root)]) for _ in range(RERUNS)]
    for rerun in reruns:
        _check(rerun, "cd4ml run --json (rerun)", ok=(0, 3))
    skipped = {json.loads(r["stdout"])["skipped_as"] for r in reruns}
    skipped_as = skipped.pop() if len(skipped) == 1 else None
    rerun_walls = [r["wall_s"] for r in reruns]
    print(f"[{size}M] reruns: {rerun_walls} s, skipped as run {skipped_as}", flush=True)

    bares = _bare_fits(root, size, doc["version"])
    fit, fit_passive = bares["default"], bares["passive"]
    print(f"[{size}M] bare fit: {fit['fit_s']:.1f} s, OMP_WAIT_POLICY=PASSIVE {fit_passive['fit_s']:.1f} s "
          f"(child peak {fit['child_peak_mb']:.0f} MB); table {fit['table_mb']:.0f} MB in memory", flush=True)
    timings, busy = [_timing(run, doc, fit, fit_passive)], []
    for i in range(repeats):
        # Interleaved: each quiet repeat is followed by one next to the busy neighbour.
        if busy_repeats > i:
            assert pristine is not None
            busy.append(_busy_timing(pristine, workdir / f"busy-{i}-{rows}", size))
            print(f"[{size}M] next to a busy process {i}: {busy[-1]}", flush=True)
        if i == 0:
            continue
        assert pristine is not None
        again = workdir / f"repeat-{i}-{rows}"
        shutil.copytree(pristine, again, symlinks=True)
        rerun_first = measure([*cd4ml_cmd(), "run", "--json", "-C", str(again)])
        _check(rerun_first, "cd4ml run --json (timing repeat)", ok=(0, 3))
        again_doc = json.loads(rerun_first["stdout"])
        again_fits = _bare_fits(again, size, again_doc["version"])
        timings.append(_timing(rerun_first, again_doc, again_fits["default"], again_fits["passive"]))
        print(f"[{size}M] timing repeat {i}: {timings[-1]}", flush=True)
        shutil.rmtree(again, ignore_errors=True)
    if pristine is not None:
        shutil.rmtree(pristine, ignore_errors=True)

    result: dict[str, Any] = {
        "size_m": size, "rows": rows, "world": {"n_stores": stores, "n_items": items, "days": days},
        "ingest": {"wall_s": ingest["wall_s"], "cpu_s": ingest["cpu_s"], "peak_mb": ingest["peak_mb"],
                   "largest_process_peak_mb": ingest["largest_process_peak_mb"],
                   "tree_peak_mb": ingest["tree_peak_mb"], "load1": ingest["load1"]},
        "run": {"wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "peak_mb": run["peak_mb"], "exit": run["exit"],
                "largest_process_peak_mb": run["largest_process_peak_mb"], "tree_peak_mb": run["tree_peak_mb"],
                "load1": run["load1"],
                "stage_s": doc["seconds"], "stage_sum_s": round(sum(doc["seconds"].values()), 3),
                "gate_passed": doc["gate"]["passed"], "metrics": doc["metrics"]},
        "rerun": {"wall_s": statistics.median(rerun_walls), "walls_s": rerun_walls, "skipped_as": skipped_as,
                  "same_run": skipped_as == doc["run_id"]},
        "bare_fit": fit,
        "bare_fit_passive": fit_passive,
        "table_mb": fit["table_mb"],
        "timing_repeats": timings,
        "busy_repeats": busy,
    }
    result["ratios"] = {
        "run_wall_vs_bare_fit": round(statistics.median(t["run_vs_bare_fit"] for t in timings), 2),
        "run_wall_vs_bare_fit_passive": round(statistics.median(t["run_vs_bare_fit_passive"] for t in timings), 2),
        "bare_fit_passive_vs_default": round(fit_passive["fit_s"] / fit["fit_s"], 2),
        "run_cpu_vs_bare_fit_cpu": round(run["cpu_s"] / max(fit["fit_cpu_s"], 1e-3), 2),
        # The run's fit against the bare fit in the policy the run chose.
        "fit_stage_vs_bare_fit": round(doc["seconds"]["fit"] / _same_policy(doc, fit, fit_passive)["fit_s"], 2),
        "run_peak_vs_table": round(run["peak_mb"] / fit["table_mb"], 2),
        "ingest_peak_vs_table": round(ingest["peak_mb"] / fit["table_mb"], 2),
        "run_peak_above_imports_vs_table": round((run["peak_mb"] - base["run"]) / fit["table_mb"], 2),
        # What any run must hold at once: its imports, the table, the feature matrix the estimator is fitted on.
        "run_peak_vs_imports_table_x": round(run["peak_mb"] / (base["run"] + fit["table_mb"] + fit["X_mb"]), 2),
        "ingest_peak_above_imports_vs_table": round((ingest["peak_mb"] - base["ingest"]) / fit["table_mb"], 2),
    }
    if busy:
        result["ratios"]["busy_fit_stage_vs_bare_fit_passive"] = round(
            statistics.median(b["fit_stage_vs_bare_fit_passive"] for b in busy), 2)
    if copy is not None:
        prof = measure([sys.executable, str(HERE), "--child-stages", str(copy)])
        _check(prof, "stage profile", ok=(0,))
        result["stage_profile"] = _marked(prof["stdout"])
        print(f"[{size}M] stage profile: peak MB {result['stage_profile']['peak_mb']}", flush=True)
        shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return result


def growth(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    by = {r["size_m"]: r for r in results}
    if 1.0 not in by or 5.0 not in by:
        return None
    a, b = by[1.0], by[5.0]
    rows = b["rows"] / a["rows"]

    def g(x: float, y: float) -> float:
        return round(y / x, 2) if x > 0 else float("nan")

    out = {"rows_x": round(rows, 2), "run_wall_x": g(a["run"]["wall_s"], b["run"]["wall_s"]),
           "ingest_wall_x": g(a["ingest"]["wall_s"], b["ingest"]["wall_s"]),
           "bare_fit_x": g(a["bare_fit"]["fit_s"], b["bare_fit"]["fit_s"]),
           # What the pipeline adds around the estimator's own fit.
           "run_without_fit_x": g(*(r["run"]["wall_s"] - r["run"]["stage_s"]["fit"] for r in (a, b))),
           "run_peak_x": g(a["run"]["peak_mb"], b["run"]["peak_mb"]),
           "ingest_peak_x": g(a["ingest"]["peak_mb"], b["ingest"]["peak_mb"]),
           "stage_x": {k: g(a["run"]["stage_s"][k], b["run"]["stage_s"][k]) for k in a["run"]["stage_s"]
                       if a["run"]["stage_s"][k] >= 0.05}}
    if "stage_profile" in a and "stage_profile" in b:
        total = [sum(v for k, v in r["stage_profile"]["seconds"].items() if k.startswith("run.")) for r in (a, b)]
        out["profile_run_total_x"] = g(*total)
        out["profile_stage_x"] = {k: g(v, b["stage_profile"]["seconds"][k])
                                  for k, v in a["stage_profile"]["seconds"].items() if v >= 0.05}
    return out


def notes(results: list[dict[str, Any]]) -> list[str]:
    """What the stage figures include, and warnings about the measurements themselves (CPU contention
    shows as two fits that disagree)."""
    out = []
    if results and "import_s" in results[0]["bare_fit"]:
        imports = ", ".join(f"{r['bare_fit']['import_s']:.2f} s" for r in results)
        out.append(f"The bare fit imports LightGBM with scikit-learn (LGBMRegressor needs it) before its clock "
                   f"starts: {imports} in the bare-fit children. The run imports LightGBM without scikit-learn "
                   "(about 0.1 s). Both fits gave byte-identical model files.")
    if results and "bare_fit_passive" in results[0]:
        slower = ", ".join(f"{r['ratios']['bare_fit_passive_vs_default']:.2f}x" for r in results)
        chosen = ", ".join(f"{r['size_m']:g}M: {t['run_openmp']['policy']} ({t['run_openmp']['busy_cores']} cores busy)"
                           for r in results for t in r["timing_repeats"] if t.get("run_openmp"))
        out.append("`cd4ml run` chooses OpenMP's wait policy from the machine's load when it starts "
                   "(cd4ml/runtime.py): PASSIVE (threads sleep while they wait) next to other busy processes, "
                   f"OpenMP's default otherwise. The bare fit with OMP_WAIT_POLICY=PASSIVE took {slower} the "
                   f"default's time here. The runs chose: {chosen or 'not reported'}.")
    for r in results:
        fit_stage = r["run"]["stage_s"]["fit"]
        bare = fit_stage / r["ratios"]["fit_stage_vs_bare_fit"]  # the bare fit in the policy the run chose
        prof = r.get("stage_profile", {}).get("seconds", {}).get("run.fit")
        if not 0.75 <= fit_stage / bare <= 1.33:
            out.append(f"{r['size_m']:g}M: the run's fit stage took {fit_stage:.1f} s, the bare fit {bare:.1f} s"
                       + (f", the stage profile's fit {prof:.1f} s" if prof else "") +
                       " on the same matrix with the same params: the machine was busy (other processes on "
                       "the cores LightGBM's n_jobs threads use), so wall times at this size are not comparable."
                       + (f" 1-min load before/after the run: {r['run']['load1']}." if "load1" in r["run"] else ""))
    return out


def targets(results: list[dict[str, Any]], grow: dict[str, Any] | None) -> list[dict[str, Any]]:
    by = {r["size_m"]: r for r in results}
    out = []
    if 1.0 in by:
        r = by[1.0]
        ratio = r["ratios"]["run_wall_vs_bare_fit"]
        each = r.get("timing_repeats", [])
        pairs = ", ".join("{run_wall_s:.1f} s / {bare_fit_s:.1f} s".format(**t) for t in each)
        passive = ", ".join("{bare_fit_passive_s:.1f} s".format(**t) for t in each)
        value = (f"{ratio}x, median of {len(each)} (run / bare fit in OpenMP's default: {pairs}); "
                 f"{r['ratios']['run_wall_vs_bare_fit_passive']}x the bare fit with OMP_WAIT_POLICY=PASSIVE "
                 f"({passive})")
        out.append({"target": f"cd4ml run at 1M rows <= {RUN_VS_BARE_MAX}x the default-settings bare fit (wall)",
                    "value": value, "met": ratio <= RUN_VS_BARE_MAX})
        busy = r.get("busy_repeats", [])
        if busy:
            ratio = r["ratios"]["busy_fit_stage_vs_bare_fit_passive"]
            pairs = ", ".join("{fit_stage_s:.1f} s / {bare_fit_passive_s:.1f} s".format(**b) for b in busy)
            walls = ", ".join("{run_vs_bare_fit_passive:.2f}x".format(**b) for b in busy)
            out.append({"target": f"next to one busy process, the run's fit at 1M rows <= {RUN_BUSY_VS_PASSIVE_MAX}x "
                                  "the PASSIVE bare fit next to it",
                        "value": f"{ratio}x, median of {len(busy)} (fit stage / bare fit: {pairs}); run wall / "
                                 f"bare fit: {walls}", "met": ratio <= RUN_BUSY_VS_PASSIVE_MAX})
        else:
            out.append({"target": "next to one busy process, the run's fit at 1M rows <= "
                                  f"{RUN_BUSY_VS_PASSIVE_MAX}x the PASSIVE bare fit", "value": "not measured",
                        "met": None})
    else:
        out.append({"target": f"cd4ml run at 1M rows <= {RUN_VS_BARE_MAX}x the bare fit", "value": "not measured",
                    "met": None})
    if grow:
        for name, key in (("cd4ml run", "run_wall_x"), ("cd4ml data ingest", "ingest_wall_x")):
            value = f"{grow[key]}x"
            if key == "run_wall_x":
                value += (f" (the bare fit: {grow['bare_fit_x']}x; the run without its fit stage: "
                          f"{grow['run_without_fit_x']}x)")
            out.append({"target": f"{name} time growth 1M -> 5M no faster than linear ({grow['rows_x']}x rows)",
                        "value": value, "met": grow[key] <= grow["rows_x"]})
    else:
        out.append({"target": "time growth 1M -> 5M no faster than linear", "value": "not measured (needs 1 and 5)",
                    "met": None})
    reruns = ", ".join(f"{r['size_m']:g}M: {r['rerun']['wall_s']:.2f} s" for r in results)
    out.append({"target": f"a rerun with nothing changed is skipped in <= {RERUN_MAX_S:g} s (median of {RERUNS})",
                "value": reruns,
                "met": all(r["rerun"]["same_run"] and r["rerun"]["wall_s"] <= RERUN_MAX_S for r in results)})
    big = [r for r in results if r["size_m"] >= 1.0] or results
    for name, key in (("cd4ml run", "run_peak_vs_table"), ("cd4ml data ingest", "ingest_peak_vs_table")):
        values = ", ".join(f"{r['size_m']:g}M: {r['ratios'][key]}x" for r in big)
        out.append({"target": f"{name} peak RSS <= {PEAK_VS_TABLE_MAX}x the table's in-memory size "
                              f"(sizes >= 1M)", "value": values,
                    "met": all(r["ratios"][key] <= PEAK_VS_TABLE_MAX for r in big)})
    return out


def machine() -> dict[str, Any]:
    import lightgbm
    import pandas

    load = os.getloadavg()
    return {"when": dt.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load],
            "lightgbm": lightgbm.__version__, "pandas": pandas.__version__,
            "thread_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "OPENBLAS_", "MKL_"))}}


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


def machine_line(m: dict[str, Any]) -> str:
    """When, Python, CPUs and load: the first line of every benchmark report."""
    return (f"{m['when']}, Python {m['python']}, {m['cpus']} CPUs, load average at start {m['loadavg_start']} "
            f"and end {m['loadavg_1_5_15']} (1/5/15 min)")


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    res = doc["results"]
    lines = [
        "# Pipeline benchmark",
        "",
        f"{machine_line(m)}, LightGBM {m['lightgbm']}, pandas {m['pandas']}.",
        "Each command is its own child process; peak = the larger of its largest process's max RSS and the "
        "sum of RSS over its process tree (sampled every 20 ms). Bare fit = only "
        "`LGBMRegressor(**same params).fit(X, y)` on the pipeline's own feature matrix. Import baseline = "
        f"peak RSS of a process that only imports what the command imports: {doc['import_baseline_peak_mb']} MB.",
        "",
        "## Targets",
        "",
        "| target | value | |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['value']} | {_mark(t['met'])} |" for t in doc["targets"]],
        "",
        "## Per size",
        "",
        "| | " + " | ".join(f"{r['size_m']:g}M" for r in res) + " |",
        "|---|" + "---:|" * len(res),
    ]

    def row(label: str, f: Any) -> str:
        return f"| {label} | " + " | ".join(f(r) for r in res) + " |"

    stages = list(res[0]["run"]["stage_s"]) if res else []
    lines += [
        row("rows", lambda r: f"{r['rows']:,}"),
        row("world (stores x items x days)", lambda r: "{n_stores} x {n_items} x {days}".format(**r["world"])),
        row("table in memory (MB)", lambda r: f"{r['table_mb']:.0f}"),
        row("feature matrix X (MB)", lambda r: f"{r['bare_fit']['X_mb']:.0f} {tuple(r['bare_fit']['X_shape'])}"),
        row("ingest wall (s)", lambda r: f"{r['ingest']['wall_s']:.1f}"),
        row("ingest CPU (s)", lambda r: f"{r['ingest']['cpu_s']:.1f}"),
        row("ingest peak (MB)", lambda r: f"{r['ingest']['peak_mb']:.0f}"),
        row("run wall (s)", lambda r: f"{r['run']['wall_s']:.1f}"),
        row("run CPU, user+sys (s)", lambda r: f"{r['run']['cpu_s']:.1f}"),
        row(f"rerun, nothing changed: skipped (s, median of {RERUNS})", lambda r: f"{r['rerun']['wall_s']:.2f}"),
        row("run peak (MB)", lambda r: f"{r['run']['peak_mb']:.0f}"),
        row("run peak: largest process / process tree summed (MB)",
            lambda r: f"{r['run']['largest_process_peak_mb']:.0f} / {r['run']['tree_peak_mb']:.0f}"),
        *[row(f"run stage {s} (s)", lambda r, s=s: f"{r['run']['stage_s'].get(s, 0):.2f}") for s in stages],
        row("run stages sum (s)", lambda r: f"{r['run']['stage_sum_s']:.1f}"),
        row("run wall - fit stage: overhead (s)", lambda r: f"{r['run']['wall_s'] - r['run']['stage_s']['fit']:.1f}"),
        row("run outside stages (s)", lambda r: f"{r['run']['wall_s'] - r['run']['stage_sum_s']:.1f}"),
        row("bare fit (s)", lambda r: f"{r['bare_fit']['fit_s']:.1f}"),
        row("bare fit CPU (s)", lambda r: f"{r['bare_fit']['fit_cpu_s']:.1f}"),
        row("bare fit, OMP_WAIT_POLICY=PASSIVE (s)", lambda r: f"{r['bare_fit_passive']['fit_s']:.1f}"),
        row("run wall / bare fit (median of the timing repeats)", lambda r: f"{r['ratios']['run_wall_vs_bare_fit']:.2f}"),
        row("run wall / bare fit, PASSIVE (median)", lambda r: f"{r['ratios']['run_wall_vs_bare_fit_passive']:.2f}"),
        row("the runs' OpenMP wait policy (busy cores when chosen)",
            lambda r: ", ".join(f"{t['run_openmp']['policy']} ({t['run_openmp']['busy_cores']})"
                                for t in r.get("timing_repeats", []) if t.get("run_openmp"))),
        row("timing repeats: run wall / bare fit, each",
            lambda r: ", ".join(f"{t['run_vs_bare_fit']:.2f}" for t in r.get("timing_repeats", []))),
        row("timing repeats: run wall / bare fit, PASSIVE, each",
            lambda r: ", ".join(f"{t['run_vs_bare_fit_passive']:.2f}" for t in r.get("timing_repeats", []))),
        row("next to a busy process: fit stage / PASSIVE bare fit, each",
            lambda r: ", ".join(f"{b['fit_stage_vs_bare_fit_passive']:.2f}" for b in r.get("busy_repeats", []))),
        row("next to a busy process: the runs' policy (busy cores)",
            lambda r: ", ".join(f"{b['run_openmp']['policy']} ({b['run_openmp']['busy_cores']})"
                                for b in r.get("busy_repeats", []) if b.get("run_openmp"))),
        row("run CPU / bare fit CPU", lambda r: f"{r['ratios']['run_cpu_vs_bare_fit_cpu']:.2f}"),
        row("fit stage / bare fit in the policy the run chose",
            lambda r: f"{r['ratios']['fit_stage_vs_bare_fit']:.2f}"),
        row("run peak / table", lambda r: f"{r['ratios']['run_peak_vs_table']:.1f}"),
        row("ingest peak / table", lambda r: f"{r['ratios']['ingest_peak_vs_table']:.1f}"),
        row("run (peak - import baseline) / table",
            lambda r: f"{r['ratios']['run_peak_above_imports_vs_table']:.1f}"),
        row("run peak / (import baseline + table + X)",
            lambda r: f"{r['ratios']['run_peak_vs_imports_table_x']:.2f}"),
        row("ingest (peak - import baseline) / table",
            lambda r: f"{r['ratios']['ingest_peak_above_imports_vs_table']:.1f}"),
        row("gate passed", lambda r: str(r["run"]["gate_passed"])),
    ]
    if doc.get("notes"):
        lines += ["", "## Notes on this measurement", "", *[f"- {n}" for n in doc["notes"]]]
    g = doc.get("growth_1m_to_5m")
    if g:
        lines += ["", f"## Growth 1M -> 5M ({g['rows_x']}x rows; linear = {g['rows_x']}x)", "",
                  "| | x |", "|---|---:|",
                  f"| run wall | {g['run_wall_x']} |", f"| ingest wall | {g['ingest_wall_x']} |",
                  f"| bare fit | {g['bare_fit_x']} |", f"| run wall - fit stage | {g['run_without_fit_x']} |",
                  f"| run peak RSS | {g['run_peak_x']} |",
                  f"| ingest peak RSS | {g['ingest_peak_x']} |",
                  *[f"| stage {k} | {v} |" for k, v in g["stage_x"].items()]]
        if "profile_run_total_x" in g:
            lines += [f"| stage profile: run stages total | {g['profile_run_total_x']} |",
                      *[f"| stage profile: {k} | {v} |" for k, v in g["profile_stage_x"].items()]]
    prof = [r for r in res if "stage_profile" in r]
    if prof:
        steps = list(prof[0]["stage_profile"]["peak_mb"])
        lines += ["", "## Stage profile (in-process, a copy of the project; peak RSS per step, sampled)", "",
                  "| step | " + " | ".join(f"{r['size_m']:g}M s / RSS at start / peak MB" for r in prof) + " |",
                  "|---|" + "---:|" * len(prof)]
        for s in steps:
            cells = []
            for r in prof:
                p = r["stage_profile"]
                cells.append(f"{p['seconds'].get(s, 0):.2f} / {p['rss_start_mb'].get(s, 0):.0f} / "
                             f"{p['peak_mb'].get(s, 0):.0f}")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_results(out: Path, name: str, doc: dict[str, Any], md: str) -> None:
    """`name`.json and `name`.md into `out` (created), the Markdown echoed to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"wrote {out / (name + '.json')} and {name}.md in {doc['total_s']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1,1,5", help="Millions of rows, comma-separated (default 0.1,1,5).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--stages", action="store_true",
                    help="Also profile each ingest step and run stage in-process (one more ingest and run per size).")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="Only rewrite pipeline.md next to JSON from its measurements (targets recomputed).")
    ap.add_argument("--repeats", type=int, default=TIMING_REPEATS,
                    help=f"At {TARGET_SIZE:g}M rows, run and bare fits this many times, interleaved; the time "
                         f"target takes the median (default {TIMING_REPEATS}).")
    ap.add_argument("--busy-repeats", type=int, default=None,
                    help=f"At {TARGET_SIZE:g}M rows, this many runs and PASSIVE bare fits next to one busy process, "
                         "interleaved with the quiet repeats (default: as --repeats; 0: none).")
    ap.add_argument("--child-bare-fit", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-stages", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_bare_fit:
        sys.stdout.write(MARK + json.dumps(bare_fit(args.child_bare_fit)))
        return 0
    if args.child_stages:
        sys.stdout.write(MARK + json.dumps(stage_profile(args.child_stages)))
        return 0

    if args.render:
        doc = json.loads(args.render.read_text(encoding="utf-8"))
        doc["growth_1m_to_5m"] = grow = growth(doc["results"])
        doc["targets"], doc["notes"] = targets(doc["results"], grow), notes(doc["results"])
        args.render.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        args.render.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
        return 0

    sizes = sorted({float(s) for s in args.sizes.split(",") if s.strip()})
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    base = import_baselines()
    print(f"import baselines (peak MB): {base}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="cd4ml-bench-pipeline-") as tmp:
        for size in sizes:
            busy = args.repeats if args.busy_repeats is None else args.busy_repeats
            results.append(bench_size(size, Path(tmp), args.stages, base,
                                      args.repeats if size == TARGET_SIZE else 1, busy if size == TARGET_SIZE else 0))
    grow = growth(results)
    doc = {"machine": {**machine(), "loadavg_start": load_start}, "sizes_m": sizes,
           "import_baseline_peak_mb": base, "results": results,
           "growth_1m_to_5m": grow, "targets": targets(results, grow), "notes": notes(results),
           "total_s": round(time.perf_counter() - t0, 1)}
    write_results(args.out, "pipeline", doc, markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
