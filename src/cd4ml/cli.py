"""The `cd4ml` command line (Typer + Rich).

Exit codes, for CI: 0 ok; 1 anything else; 2 usage or config error;
3 model rejected by the acceptance gate; 4 data rejected by validation;
5 retraining is due (`cd4ml monitor --check`).
Heavy libraries (MLflow, pandas, LightGBM) are imported inside commands, so
`cd4ml --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cd4ml import runtime
from cd4ml.demo import EXAMPLES
from cd4ml.errors import Cd4mlError, DataRejected, GateRejected

if TYPE_CHECKING:
    from cd4ml.config import Project
    from cd4ml.data.validation import ValidationReport
    from cd4ml.gate.checks import GateReport

app = typer.Typer(help="Continuous Delivery for Machine Learning: data -> train -> gate -> release.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Versioned, validated training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
ci_app = typer.Typer(help="The project's pipeline in the team's CI system.", no_args_is_help=True)
app.add_typer(ci_app, name="ci")
console = Console()
err = Console(stderr=True)

ProjectDir = typer.Option(Path("."), "--project", "-C", help="Project folder (holds cd4ml.yaml).")
RUN_STAGES = ("tests", "earlier_run", "load", "features", "fit", "evaluate", "backtest", "register", "gate",
              "plots")


def _load(project_dir: Path, sets: list[str] | None = None) -> "Project":
    from cd4ml.config import load_project, parse_overrides

    return load_project(project_dir, parse_overrides(sets or []))


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Folder to create the project in."),
    example: Optional[str] = typer.Option(None, help="Scaffold a working example: groceries or churn."),
    ci: Optional[str] = typer.Option(None, "--ci", help="Also write a CI pipeline: github, gitlab or jenkins."),
) -> None:
    """Create a project: a commented cd4ml.yaml template, or a working example."""
    from cd4ml.scaffold import CI_FILES, init_ci, init_project

    if ci is not None and ci not in CI_FILES:  # before anything is written
        init_ci(directory, ci)
    files = init_project(directory, example)
    if ci is not None:
        files += init_ci(directory, ci)
    console.print(f"[green]Created[/] {escape(str(directory))} ({example or 'template'}):")
    for f in files:
        console.print(f"  {f}", markup=False)
    console.print(f"Next: cd {directory} && cd4ml data ingest && cd4ml run", markup=False)


@ci_app.command("init")
def ci_init(
    system: str = typer.Argument(..., help="The CI system: github, gitlab or jenkins."),
    project_dir: Path = ProjectDir,
    install: Optional[str] = typer.Option(None, "--install", help="What the jobs pip-install for cd4ml (default: "
                                                                  "this version from the package index)."),
) -> None:
    """Write the project's pipeline for a CI system: test, train + gate + promote on main, a check without
    promotion on pull requests, the retraining check on a schedule."""
    from cd4ml.scaffold import init_ci

    files = init_ci(project_dir, system, install)
    console.print(f"[green]Wrote[/] the {system} pipeline into {escape(str(project_dir))}:")
    for f in files:
        console.print(f"  {f}", markup=False)
    console.print("Next: set MLFLOW_TRACKING_URI in the CI system's secrets to the team's MLflow server", markup=False)


@data_app.command("ingest")
def data_ingest(
    project_dir: Path = ProjectDir,
    path: Optional[str] = typer.Option(None, "--path", help="Read this CSV/Parquet instead of the source."),
    append: bool = typer.Option(False, "--append", help="Add rows to the table instead of replacing them."),
) -> None:
    """Validate the source data and store it as a new version of the training table."""
    runtime.return_freed_memory()
    from cd4ml.data.ingest import ingest

    project = _load(project_dir)
    with console.status("Reading and validating data..."):
        try:
            result = ingest(project, path=path, mode="append" if append else "overwrite")
        except DataRejected as exc:
            if exc.report is not None:
                _print_validation(exc.report, project)
            raise
    console.print(f"[green]Accepted[/] {result.rows:,} rows from {escape(result.source)} "
                  f"-> table version [bold]{result.version}[/] ({escape(str(project.table_path))})")


def _print_validation(report: "ValidationReport", project: "Project") -> None:
    import datetime as dt

    err.print(f"Data rejected: {len(report.failures)} rule(s) broken in {report.rows:,} rows "
              "(row 1 is the first row of data)", highlight=False)
    for failure in report.failures:
        for line in failure.lines():
            err.print(line, markup=False, highlight=False, soft_wrap=True)  # values are the file's, not markup
    out = project.state_dir / "reports" / f"validation-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    err.print(f"Full report: {out}. The table was not changed.", markup=False, highlight=False)


@data_app.command("versions")
def data_versions(project_dir: Path = ProjectDir, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the training table's versions: rows, time range, when, from where."""
    from cd4ml.data.table import TrainingTable

    versions = TrainingTable.for_project(_load(project_dir)).versions()
    if as_json:
        _print_json([v.__dict__ for v in versions])
        return
    table = Table(title="Training table versions")
    for col in ("version", "written (UTC)", "operation", "rows", "from", "to", "origin", "source"):
        table.add_column(col)
    for v in versions:
        table.add_row(str(v.version), f"{v.timestamp:%Y-%m-%d %H:%M:%S}", v.operation,
                      f"{v.rows:,}" if v.rows is not None else "?", v.time_min or "", v.time_max or "",
                      v.origin or "", escape(v.source or ""))
    console.print(table)


@app.command()
def run(
    project_dir: Path = ProjectDir,
    set_: list[str] = typer.Option([], "--set", help="Override a config value: dotted.key=value (repeatable)."),
    data_version: Optional[int] = typer.Option(None, "--data-version", help="Pin this table version."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register and gate, but never move champion."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    force: bool = typer.Option(False, "--force", help="Run even if an earlier run had the same data, code "
                                                      "and config."),
) -> None:
    """Run the pipeline: pinned data -> features -> train -> evaluate -> register -> gate -> promote."""
    wait_policy = runtime.openmp_for_fit()  # first: the run's own work would count as load
    runtime.return_freed_memory()
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cd4ml.pipeline.rerun import EarlierRunLookup

    project = _load(project_dir, set_)
    # Its child process imports MLflow (seconds) while this one imports the pipeline's libraries.
    lookup = EarlierRunLookup.for_project(project)
    from cd4ml.pipeline.run import run_pipeline

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task("pipeline", total=len(RUN_STAGES))

        def on_stage(name: str) -> None:
            progress.update(task, description=f"stage: {name}", completed=RUN_STAGES.index(name))

        # MLflow writes "View run at ..." lines to stdout; stdout is cd4ml's (and --json's) alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_pipeline(project, data_version=data_version, on_stage=on_stage,
                                  promote=False if no_promote else None, force=force, lookup=lookup)
    if as_json:
        _print_json({"run_id": result.run_id, "version": result.version, "data_version": result.data_version,
                     "metrics": result.metrics, "baseline": result.baseline, "baselines": result.baselines,
                     "oracle": result.oracle, "bias": result.bias,
                     "gate": result.gate.to_dict(), "promoted": result.promoted, "seconds": result.seconds,
                     "skipped_as": result.skipped_as, "note": result.note,
                     "decision_threshold": result.decision_threshold,
                     "backtest": [asdict(f) for f in result.backtest],
                     "openmp_wait_policy": wait_policy.to_dict()})
    else:
        _print_run(project, result)
    if not result.gate.passed:
        raise GateRejected(f"version {result.version} rejected by the acceptance gate: "
                           + "; ".join(c.reason for c in result.gate.failed), result.gate)


def _print_run(project: "Project", result: Any) -> None:
    from cd4ml.gate.checks import BASELINE_LABELS

    if result.skipped_as:
        verdict = "passed" if result.gate.passed else "rejected by"
        console.print(f"Nothing changed since run {result.skipped_as[:8]} (same data version "
                      f"{result.data_version}, feature code and config): it registered version {result.version}, "
                      f"which {verdict} the gate. Not run again; use --force to retrain.")
        if result.note:
            console.print(f"Version {result.version}: {result.note}.")
        if result.promoted:
            _print_promoted(result)
        return
    primary = project.config.metrics.primary
    table = Table(title=f"Run {result.run_id[:8]} on data version {result.data_version}: holdout metrics")
    table.add_column("metric", no_wrap=True)
    kinds = list(result.baselines)
    labels = ["naive baseline"] if kinds == ["group_mean"] else [BASELINE_LABELS[k] for k in kinds]
    for col in ("model", *labels, *(["oracle"] if result.oracle else [])):
        table.add_column(col, justify="right")
    for name, value in result.metrics.items():
        row = [f"{value:.4f}", *(f"{result.baselines[k][name]:.4f}" for k in kinds)]
        if result.oracle:
            row.append(f"{result.oracle[name]:.4f}")
        table.add_row(f"[bold]{name}[/]" if name == primary else name, *row)
    console.print(table)
    if result.bias is not None:
        console.print(f"Forecast totals: sum of predictions / sum of actuals on the holdout = {result.bias:.3f}"
                      + (f" ({result.bias - 1:+.1%})" if result.bias == result.bias else ""))
    if result.backtest:
        _print_backtest(result.backtest, primary, kinds, labels)
    choice = project.config.decision.threshold
    if result.decision_threshold is not None and not isinstance(choice, float):
        console.print(f"Decision threshold chosen on the training data: {result.decision_threshold:.4f} "
                      f"(maximises {choice.maximize}).")
    _print_gate(result.gate, result.version)
    if result.promoted:
        _print_promoted(result)
    elif result.gate.passed:
        console.print(f"Version {result.version} passed the gate; champion not moved (auto-promote off).")
    _print_stage_seconds(result.seconds)


def _print_backtest(folds: list[Any], primary: str, kinds: list[str], labels: list[str]) -> None:
    """Each fold's holdout (fold 0: the run's own) and primary metric, model next to each baseline, and the mean."""
    table = Table(title=f"Backtest: {primary} on each fold's holdout (rolling origin)")
    for col in ("fold", "holdout", "rows", "model", *labels):
        table.add_column(col, justify="left" if col == "holdout" else "right", no_wrap=True)
    for f in folds:
        table.add_row(str(f.steps_back), f"{f.first[:16]} .. {f.last[:16]}", f"{f.rows:,}", f"{f.metrics[primary]:.4f}",
                      *(f"{f.baselines[k][primary]:.4f}" for k in kinds))
    mean = lambda values: f"{sum(values) / len(values):.4f}"  # noqa: E731
    table.add_row("[bold]mean[/]", "", "", mean([f.metrics[primary] for f in folds]),
                  *(mean([f.baselines[k][primary] for f in folds]) for k in kinds))
    console.print(table)


def _print_stage_seconds(seconds: dict[str, float]) -> None:
    table = Table(title="Stage seconds")
    table.add_column("stage", no_wrap=True)
    table.add_column("seconds", justify="right")
    for name, value in seconds.items():
        table.add_row(name, f"{value:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{sum(seconds.values()):.2f}[/]")
    console.print(table)


def _print_promoted(result: Any) -> None:
    before = f" (was v{result.champion_before})" if result.champion_before else ""
    console.print(f"[green]Version {result.version} is now champion[/]{before}.")


def _print_gate(report: "GateReport", version: str) -> None:
    verdict = "[green]PASSED[/]" if report.passed else "[red]REJECTED[/]"
    table = Table(title=f"Acceptance gate for version {version}: {verdict}")
    table.add_column("check", no_wrap=True)
    for col in ("value", "threshold", "champion", "result", "why"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        fmt = (lambda v: "" if v is None else f"{v:.4g}")
        table.add_row(escape(c.name), fmt(c.value), escape(c.threshold), fmt(c.champion),
                      "[green]pass[/]" if c.passed else "[red]FAIL[/]", escape(c.reason))
    console.print(table)


def _registry(project_dir: Path) -> Any:
    from cd4ml.release.registry import Registry

    project = _load(project_dir)
    return Registry.for_project(project), project


@app.command()
def releases(
    project_dir: Path = ProjectDir,
    as_json: bool = typer.Option(False, "--json"),
    history: bool = typer.Option(False, "--history", help="Show every move of the champion alias."),
    stats: bool = typer.Option(False, "--stats", help="The delivery measures (DORA) of the release history."),
    since: Optional[str] = typer.Option(None, "--since", help="With --stats: the last period only, e.g. 90d, 12w."),
    clean: bool = typer.Option(False, "--clean", help="Settle a move of champion that a killed command left "
                                                      "half done; mark versions whose run died before the "
                                                      "gate's verdict 'abandoned'."),
) -> None:
    """List registered versions (champion marked), or the release history."""
    from cd4ml.release.listing import list_releases

    registry, project = _registry(project_dir)
    if clean:
        _clean_releases(registry)
        return
    if stats or since:
        _print_delivery(registry, project, since, as_json)
        return
    if history:
        events = registry.history()
        if as_json:
            _print_json([e.__dict__ for e in events])
            return
        table = Table(title=f"Release history of {registry.name}")
        for col in ("when (UTC)", "event", "from", "to", "who", "why"):
            table.add_column(col, overflow="fold")
        for e in events:
            table.add_row(f"{e.time:%Y-%m-%d %H:%M:%S}", e.kind, e.from_version or "-", e.to_version,
                          escape(e.who), escape(e.why))
        console.print(table)
        return
    rows = list_releases(registry)
    if as_json:
        _print_json([r.to_json() for r in rows])
        return
    table = Table(title=f"Releases of {registry.name}")
    for col in ("", "version", "created (UTC)", project.config.metrics.primary, "gate", "data", "commit", "run"):
        table.add_column(col)
    for r in rows:
        metric = r.metrics.get(project.config.metrics.primary)
        gate = {"passed": "[green]passed[/]", "rejected": "[red]rejected[/]"}.get(r.gate or "", r.gate or "?")
        table.add_row("[bold green]*[/]" if r.champion else "", r.version, r.created[:19],
                      f"{metric:.4f}" if metric is not None else "", gate, str(r.data_version),
                      (r.git_commit or "")[:8], (r.run_id or "")[:8])
    console.print(table)
    console.print("* = champion")
    for e in registry.interrupted_moves():
        console.print(f"[yellow]A move of champion ({e.kind} v{e.from_version or '-'} -> v{e.to_version}, begun "
                      f"{e.time:%Y-%m-%d %H:%M:%S} UTC) is not marked done[/]: it is under way, or its command was "
                      "killed; the next promote, rollback or run settles it, or `cd4ml releases --clean`.")
    for left in registry.leftovers():
        console.print(f"[yellow]Version {left.version} is pending, but the run that registered it (pid {left.pid}) "
                      "is gone[/]: `cd4ml releases --clean` marks it abandoned.")


@app.command()
def diff(
    first: str = typer.Argument(..., help="A version number, or champion."),
    second: str = typer.Argument(..., help="A version number, or champion."),
    project_dir: Path = ProjectDir,
    as_json: bool = typer.Option(False, "--json"),
    as_md: bool = typer.Option(False, "--md", help="Markdown, for a pull request comment or a CI job summary."),
) -> None:
    """What changed between two releases: config, data, code, metrics, slices and gate verdicts."""
    from cd4ml.release.diff import diff_releases

    registry, project = _registry(project_dir)
    result = diff_releases(project, registry, first, second)
    if as_json:
        _print_json(result.to_json())
    elif as_md:
        sys.stdout.write(result.to_markdown())
    else:
        _print_diff(result)


def _print_diff(d: Any) -> None:
    a, b = d.a, d.b
    from cd4ml.release.diff import format_change, format_rows, format_value

    show = lambda v: escape(format_value(v))  # noqa: E731
    head = Table(title=f"Version {a.version} -> version {b.version}")
    for col in ("", f"v{a.version}", f"v{b.version}"):
        head.add_column(col)
    head.add_row("gate", show(a.gate), show(b.gate))
    head.add_row("data version", f"{a.data_version} ({format_rows(a)})", f"{b.data_version} ({format_rows(b)})")
    head.add_row("data time", show(a.data_time), show(b.data_time))
    head.add_row("commit", f"{(a.commit or '-')[:8]}{' dirty' if a.dirty else ''}",
                 f"{(b.commit or '-')[:8]}{' dirty' if b.dirty else ''}")
    head.add_row("feature code", (a.code_digest or "-")[:12], (b.code_digest or "-")[:12])
    console.print(head)
    if not d.slices:
        console.print("Slices: no slice value's metric moved.")
    for title, rows in (("Metrics", d.metrics), (f"Slices ({d.primary}), largest moves", d.slices)):
        if rows:
            table = Table(title=title)
            table.add_column("")
            for col in (f"v{a.version}", f"v{b.version}", "change"):
                table.add_column(col, justify="right")
            for c in rows:
                table.add_row(escape(c.name), show(c.a), show(c.b), format_change(c.change))
            console.print(table)
    if d.config:
        table = Table(title="Config")
        for col in ("key", f"v{a.version}", f"v{b.version}"):
            table.add_column(col, overflow="fold")
        for c in d.config:
            table.add_row(escape(c.name), show(c.a), show(c.b))
        console.print(table)
    else:
        console.print("Config: the same resolved config.")
    console.print(f"Code: {len(d.commits)} commit(s), {len(d.files)} file(s) changed"
                  + (f" ({escape(d.code_note)})" if d.code_note else ""))
    for c in d.commits[:20]:
        console.print(f"  {escape(c)}")
    if d.files:
        console.print("  files: " + escape(", ".join(d.files[:30])))


def _print_delivery(registry: Any, project: "Project", since: str | None, as_json: bool) -> None:
    from cd4ml.release.delivery import delivery_stats, format_hours as hours, parse_since

    result = delivery_stats(registry, project.root, parse_since(since) if since else None)
    if as_json:
        _print_json(result.to_json())
        return
    table = Table(title=f"Delivery of {registry.name}, {result.since[:16]} .. {result.until[:16]} UTC")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("from")
    table.add_row("deployment frequency", f"{result.per_week:.2f} / week", f"{result.deployments} version(s) made champion")
    table.add_row("lead time for changes (median)", hours(result.lead_time_hours_median),
                  f"commit -> champion, {result.lead_times_measured} with their commit in this repository")
    rate = result.change_failure_rate
    table.add_row("change failure rate", "-" if rate is None else f"{rate:.0%}", f"{result.rolled_back} rolled back")
    table.add_row("time to restore (median)", hours(result.restore_hours_median), "champion -> rolled back")
    console.print(table)


def _clean_releases(registry: Any) -> None:
    settled, abandoned = registry.clean()
    for s in settled:
        outcome = "recorded as done (the alias had moved)" if s.done else "dropped (the alias had not moved)"
        console.print(f"interrupted move {s.event.kind} v{s.event.from_version or '-'} -> v{s.event.to_version}: "
                      f"{outcome}")
    for left in abandoned:
        console.print(f"version {left.version}: abandoned (its run {(left.run_id or '?')[:8]} died before the "
                      "gate's verdict)")
    if not settled and not abandoned:
        console.print("nothing to clean: no interrupted move, no version left pending by a dead run")


@app.command()
def promote(
    version: str = typer.Argument(..., help="Model version to make champion."),
    project_dir: Path = ProjectDir,
    force: bool = typer.Option(False, "--force", help="Promote even a gate-rejected version."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; recorded)."),
) -> None:
    """Make VERSION the champion (refuses gate-rejected versions unless --force --reason)."""
    registry, _ = _registry(project_dir)
    event = registry.promote(version, kind="promote", why=reason or ("" if force else "manual promote"), force=force)
    console.print(f"[green]champion[/]: v{event.from_version or '-'} -> v{event.to_version} ({event.kind})")


@app.command()
def rollback(
    project_dir: Path = ProjectDir,
    reason: str = typer.Option("manual rollback", "--reason", help="Why (recorded)."),
) -> None:
    """Move champion back to the previous champion, in one step."""
    registry, _ = _registry(project_dir)
    event = registry.rollback(reason)
    console.print(f"[yellow]rolled back[/]: champion v{event.from_version} -> v{event.to_version}")


@app.command()
def serve(
    project_dir: Path = ProjectDir,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each watches the alias)."),
    poll: Optional[float] = typer.Option(None, help="Seconds between alias polls (default: serving.poll_seconds)."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not write the prediction log."),
) -> None:
    """Serve the champion release over HTTP; swap releases live when the alias moves."""
    import logging

    import uvicorn

    from cd4ml.release.estimators import import_lightgbm

    project = _load(project_dir)
    import_lightgbm()  # before the service's threads start: one of them imports MLflow
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    console.print(f"cd4ml serve: {project.config.project} on http://{host}:{port} "
                  f"(model {project.config.registry.model_name}@champion, {workers} worker(s))", markup=False)
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: metrics stay in its memory
        from cd4ml.serve.app import create_app

        uvicorn.run(create_app(project, log_predictions=not no_log, poll_seconds=poll), **options)
        return
    import shutil
    import tempfile

    os.environ["CD4ML_PROJECT_DIR"] = str(project.root)
    os.environ["CD4ML_LOG_PREDICTIONS"] = "0" if no_log else "1"
    if poll is not None:
        os.environ["CD4ML_POLL_SECONDS"] = str(poll)
    # Workers share Prometheus samples through files here; set before any worker imports
    # prometheus_client, fresh so no earlier run's counts are summed in.
    metrics_dir = tempfile.mkdtemp(prefix="cd4ml-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("cd4ml.serve.app:app_from_env", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


@data_app.command("refresh")
def data_refresh(project_dir: Path = ProjectDir) -> None:
    """Append production rows that have actuals to the training table (a new version, origin production)."""
    from cd4ml.refresh import refresh

    project = _load(project_dir)
    with console.status("Joining stored predictions with their actuals..."):
        try:
            result = refresh(project)
        except DataRejected as exc:
            if exc.report is not None:
                _print_validation(exc.report, project)
            raise
    if result.incomplete:
        console.print(f"[yellow]Left out[/] {result.incomplete:,} row(s) whose actuals lack required column(s): "
                      f"{escape(', '.join(result.missing_columns))}")
    if result.ingest is None:
        console.print(f"Nothing new: {result.candidates:,} production row(s) with actuals, "
                      f"{result.already_in_table:,} already in the table; no version written.")
        return
    console.print(f"[green]Appended[/] {result.new_rows:,} production rows with actuals "
                  f"({result.already_in_table:,} already in the table) -> table version "
                  f"[bold]{result.ingest.version}[/]. Next: cd4ml run")


@app.command()
def feedback(
    file: Path = typer.Argument(..., help="Actuals: a CSV, Parquet or JSON-lines file."),
    project_dir: Path = ProjectDir,
) -> None:
    """Store actuals (by request_id [+ record], or by the key columns) for served predictions."""
    from cd4ml.monitor.feedback import read_actuals
    from cd4ml.monitor.store import PredictionStore

    from cd4ml.serve.history import HistoryStore

    project = _load(project_dir)
    events = read_actuals(project.config, file)
    added = PredictionStore(project).append_actuals(events)
    history = HistoryStore.for_project(project)
    history_note = ""
    if history is not None:  # the service's next forecasts read them
        into = history.add_actuals(events)
        history.close()
        waiting = f", {into.waiting:,} by request id waiting for their prediction" if into.waiting else ""
        history_note = f" ({into.stored:,} into the history store{waiting})"
    console.print(f"[green]Stored[/] {added:,} actuals from {escape(str(file))}{history_note}. Next: cd4ml monitor")


@app.command()
def monitor(
    project_dir: Path = ProjectDir,
    check: bool = typer.Option(False, "--check", help="Exit 5 when the retraining policy says retrain."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the HTML report here "
                                                             "(default: <monitoring.store>/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Report on production: traffic, live vs offline accuracy, drift, and whether retraining is due."""
    from cd4ml.errors import RetrainDue
    from cd4ml.monitor.report import build_report, print_report, write_report

    project = _load(project_dir)
    with console.status("Compacting the prediction log and computing the report..."):
        report = build_report(project)
        path, page = write_report(project, report, html)
    if as_json:
        _print_json(report.to_json())
    else:
        print_report(report, console)
        console.print(f"Report: {path} and {page}", markup=False)
    if check and report.retrain_due:
        due = [c.name for c in report.checks if c.due]
        raise RetrainDue(f"retraining is due ({', '.join(due)}): run `cd4ml data refresh` then `cd4ml run`")


@app.command()
def ui(
    project_dir: Path = ProjectDir,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8050, help="TCP port."),
) -> None:
    """The monitoring dashboard: releases, traffic, predictions, drift, live accuracy."""
    import uvicorn

    from cd4ml.monitor.report import build_report
    from cd4ml.monitor.ui import create_ui_app

    project = _load(project_dir)
    console.print(f"cd4ml ui: {project.config.project} on http://{host}:{port}", markup=False)
    uvicorn.run(create_ui_app(lambda: build_report(project).to_json(), title=f"cd4ml: {project.config.project}"),
                host=host, port=port, log_level="warning", access_log=False)


# The demo's examples as choices: Typer names them in --help and in the usage error (exit 2).
DemoName = Enum("DemoName", {name: name for name in EXAMPLES}, type=str)


@app.command()
def demo(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Scratch folder (default: a new temp folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the scratch folder (a --dir is always kept)."),
    report: Path = typer.Option(Path("cd4ml-demo-report.html"), "--report", help="Where to write the HTML report."),
    example: DemoName = typer.Option(EXAMPLES[0], "--example", help="The bundled example to play it on."),
) -> None:
    """Play the CD4ML story end to end on a bundled example, with the service running."""
    from cd4ml.demo.story import run_demo

    path = run_demo(directory, keep, report, console, run_in_process, example.value)
    console.print(f"[green]Demo passed.[/] Report: {escape(str(path))}")


# Rich lays out a pipe or a CI log as 80 columns and wraps names ("slice:weathers it"); such
# output has no edge to fit, so it gets this width unless COLUMNS says otherwise.
PIPE_WIDTH = 200


def _fit_width_to_pipes(*consoles: Console) -> None:
    if "COLUMNS" in os.environ:
        return  # Rich honours it
    for c in consoles:
        if not c.is_terminal:
            c.width = PIPE_WIDTH


def main() -> None:
    """Console entry: maps cd4ml errors to exit codes with a clear message, no traceback.

    Usage errors are Typer's own (it prints them and exits 2).
    """
    _fit_width_to_pipes(console, err)
    try:
        app()
    except Cd4mlError as exc:
        # Messages quote the user's values and paths: "[" in them is text, not Rich markup.
        err.print(f"[red]error[/] ({type(exc).__name__}): {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except Exception as exc:  # last resort: one clear line, traceback only on request
        if os.environ.get("CD4ML_DEBUG"):
            raise
        err.print(f"[red]internal error[/]: {type(exc).__name__}: {exc} (set CD4ML_DEBUG=1 for a traceback)",
                  highlight=False)
        sys.exit(1)


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its exit code and what it wrote to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(root: Path, args: Sequence[str], env: Mapping[str, str | None]) -> CommandResult:
    """`cd4ml ARGS` in folder `root`, in this process, as `python -m cd4ml.cli ARGS` runs it (exit codes
    and error lines included), with `env` set for it (None: unset); its stdout and stderr are captured.

    A command in a process of its own pays the imports (MLflow, SQLAlchemy, pandas, LightGBM) every
    time; here they are paid once. The environment, working folder, argv and excepthook are restored
    afterwards. Not thread-safe: sys.stdout and sys.stderr are the command's while it runs. Settings
    read when a library loads (OMP_WAIT_POLICY, MLFLOW_TRACKING_URI for cd4ml.tracking) take effect
    only if the library is not loaded yet.
    """
    from click.testing import CliRunner

    code = 0
    with _process_state_kept(), CliRunner().isolation(env=dict(env)) as (out, error, _):
        os.chdir(root)
        sys.argv = ["cd4ml", *args]
        try:
            main()
        except SystemExit as exc:
            code = 0 if exc.code is None else int(exc.code)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return CommandResult(code, out.getvalue().decode(), error.getvalue().decode(errors="backslashreplace"))


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """The environment (MLflow writes MLFLOW_TRACKING_URI into it), working folder, argv and excepthook
    (Typer sets one) restored on exit."""
    environ, cwd, argv, excepthook = dict(os.environ), os.getcwd(), sys.argv, sys.excepthook
    try:
        yield
    finally:
        sys.argv, sys.excepthook = argv, excepthook
        os.chdir(cwd)
        for key in os.environ.keys() - environ.keys():
            del os.environ[key]
        os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})


if __name__ == "__main__":
    main()
