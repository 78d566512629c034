"""`cd4ml demo`: the CD4ML workshop's six scenarios, played on a bundled example.

Everything is real: a git repository, the `cd4ml` CLI's commands (run in this process: in
processes of their own, each paid MLflow's and the data stack's imports again), a Delta table,
an MLflow store, `cd4ml serve` on loopback with clients sending requests the whole time. Each
scenario checks its own claim and stops the demo (non-zero exit, naming the step) when it does not hold.
What differs between examples (template, commits, world) is their `DemoExample`.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cd4ml.demo import EXAMPLES
from cd4ml.demo.example import Commit, DemoExample, Scored
from cd4ml.errors import Cd4mlError
from cd4ml.serve.process import ServiceProcess
from cd4ml.verdicts import judged_window

GIT = ["git", "-c", "user.name=cd4ml demo", "-c", "user.email=demo@cd4ml.invalid"]
BATCH = 100  # records per production request
# What the commands of the story run with: LightGBM's OpenMP threads share two cores with the service
# and its clients, so they sleep rather than spin while they wait; the demo's own MLflow store.
COMMAND_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "COLUMNS": "110", "CD4ML_USER": "cd4ml-demo",
               "MLFLOW_TRACKING_URI": None}


class CommandOutcome(Protocol):
    returncode: int
    stdout: str
    stderr: str


# (project folder, the command's arguments, environment changes (None: unset)) -> its outcome
CommandRunner = Callable[[Path, Sequence[str], Mapping[str, "str | None"]], CommandOutcome]


class DemoFailed(Cd4mlError):
    """A scenario's claim did not hold; the message names the step and the reason."""


def load_example(name: str) -> DemoExample:
    if name not in EXAMPLES:
        raise DemoFailed(f"no demo example {name!r}; choose one of {', '.join(EXAMPLES)}")
    return importlib.import_module(f"cd4ml.demo.{name}").EXAMPLE


@dataclass
class Story:
    root: Path
    console: Console
    example: DemoExample
    run_command: CommandRunner
    releases: list[dict[str, Any]] = field(default_factory=list)
    production: list[Scored] = field(default_factory=list)
    monitoring: list[dict[str, Any]] = field(default_factory=list)
    actuals_posted: int = 0  # sent to the service's /feedback
    step: str = "setup"

    @property
    def project(self) -> Path:
        return self.root / self.example.folder

    @property
    def greater_is_better(self) -> bool:
        """The direction of the example's metric, as the project's task says."""
        from cd4ml.config import load_project

        return load_project(self.project).config.task.metric(self.example.metric).greater_is_better

    # -- narration and commands ------------------------------------------------------------
    def chapter(self, title: str) -> None:
        self.step = title
        self.console.rule(f"[bold cyan]{title}")

    def say(self, text: str) -> None:
        self.console.print(f"  {text}")

    def check(self, claim: bool, reason: str) -> None:
        if not claim:
            raise DemoFailed(f"step '{self.step}': {reason}")

    def cd4ml(self, *args: str, expect: tuple[int, ...] = (0,)) -> CommandOutcome:
        self.say(f"[dim]$ cd4ml {' '.join(args)}[/]")
        proc = self.run_command(self.project, args, COMMAND_ENV)
        if proc.returncode not in expect:
            raise DemoFailed(f"step '{self.step}': cd4ml {' '.join(args)} exited {proc.returncode} "
                             f"(expected {expect}):\n{proc.stderr[-2000:]}")
        return proc

    def git(self, *args: str) -> None:
        subprocess.run([*GIT, *args], cwd=self.project, check=True, capture_output=True)

    def commit(self, change: Commit) -> None:
        """Edit cd4ml.yaml (dotted keys) and commit, as a developer would."""
        from cd4ml.config import edit_project_file

        edit_project_file(self.project, dict(change.settings))
        self.git("commit", "-qam", change.message)
        self.say(f"[dim]git commit: {change.message}[/]")

    def run(self, *extra: str, expect: tuple[int, ...] = (0,)) -> dict[str, Any]:
        proc = self.cd4ml("run", "--json", *extra, expect=expect)
        result = json.loads(proc.stdout)
        if result["skipped_as"]:
            self.say(f"skipped: same data, code and config as run {result['skipped_as'][:8]} "
                     f"(version {result['version']})")
            return result
        failed = [c["name"] for c in result["gate"]["checks"] if not c["passed"]]
        verdict = "[green]passed[/]" if result["gate"]["passed"] else f"[red]rejected[/] ({', '.join(failed)})"
        metric = self.example.metric
        self.say(f"version {result['version']}: {metric} {result['metrics'][metric]:.4f} "
                 f"(baseline {result['baseline'][metric]:.4f}); gate {verdict}; "
                 f"{'now champion' if result['promoted'] else 'champion unchanged'}; "
                 f"fit {result['seconds'].get('fit', 0):.1f}s")
        self.releases.append({**result, "step": self.step})
        return result


def _wait_for_version(service: ServiceProcess, version: str, timeout: float = 30) -> float:
    """Seconds until /version reports `version`."""
    t0 = time.monotonic()
    with httpx.Client(base_url=service.url, timeout=5) as client:
        while time.monotonic() - t0 < timeout:
            resp = client.get("/version")
            if resp.status_code == 200 and resp.json()["model_version"] == version:
                return time.monotonic() - t0
            time.sleep(0.05)
    raise DemoFailed(f"the service did not swap to version {version} within {timeout:.0f} s")


def run_demo(directory: Path | None, keep: bool, report_path: Path, console: Console, run_command: CommandRunner,
             example: str = EXAMPLES[0]) -> Path:
    """Play all scenarios, each `cd4ml` command through `run_command`; returns the HTML report's path.
    Raises DemoFailed naming the step."""
    from cd4ml.demo.report import write_report
    from cd4ml.demo.traffic import Tally, Traffic

    chosen = load_example(example)
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="cd4ml-demo-"))
    if directory and (root / chosen.folder).exists():
        raise DemoFailed(f"{root / chosen.folder} already exists; choose an empty --dir")
    story = Story(root, console, chosen, run_command)
    tally = Tally()
    service: ServiceProcess | None = None
    started = time.monotonic()
    try:
        story.chapter("1. Plumbing: project, versioned data, first champion, the service")
        first = _first_champion(story)
        service = ServiceProcess(story.project, poll=0.5, log_path=root / "serve.log")
        service.wait_until("/ready", 200)
        _first_prediction(story, service, first, tally)
        with Traffic(service.url, dict(chosen.probe), tally, threads=1, pause=0.05):
            story.chapter("2. Data science: the project's feature tests guard the pipeline")
            _failing_feature_test(story)
            story.chapter("3. ML engineering: better features, then more trees; each release goes live")
            champions = _better_models(story, service, first)
            story.chapter("4. Continuous deployment: the gate stops a harmful change")
            _harmful_change(story, service, champions.best)
            story.chapter("5. Undo: git revert reproduces the release; rollback under load")
            _revert(story, champions.best)
        _rollback_under_load(story, service, champions, tally)

        story.chapter(f"6. In the wild: {chosen.periods_title}")
        story.production, story.monitoring = _in_the_wild(story, service, tally)
    finally:
        if service is not None:
            service.stop()
    elapsed = time.monotonic() - started
    logged = _count_logged(story.project)
    story.check(logged == tally.records, f"the prediction log holds {logged} events for "
                                         f"{tally.records} predictions served")
    _summary(story, tally, logged, elapsed)
    report = write_report(report_path, chosen, story.greater_is_better, story.releases, story.production,
                          story.monitoring, tally, logged, elapsed)
    if not keep and directory is None:
        shutil.rmtree(root, ignore_errors=True)
    return report


@dataclass(frozen=True)
class _Champions:
    """The releases of scenario 3 (`cd4ml run --json` results): richer features, then more trees."""

    better: dict[str, Any]
    best: dict[str, Any]


def _first_champion(story: Story) -> dict[str, Any]:
    """A project from `cd4ml init` in a new git repository, its data ingested, the first model trained."""
    from cd4ml.scaffold import init_project

    example = story.example
    init_project(story.project, example.template)
    story.git("init", "-q")
    story.git("add", "-A")
    story.git("commit", "-qm", f"{example.template} project from cd4ml init")
    story.commit(example.first_model)
    story.cd4ml("data", "ingest")
    story.say(example.data_note)
    first = story.run()
    story.check(first["promoted"], "the first model did not become champion")
    return first


def _first_prediction(story: Story, service: ServiceProcess, first: dict[str, Any], tally: Any) -> None:
    """One prediction over HTTP, of the record the clients of scenarios 1-5 keep asking for."""
    from cd4ml.config import load_project
    from cd4ml.demo.traffic import PROBE_HEADERS, post
    from cd4ml.task import Classification

    record = dict(story.example.probe)
    with httpx.Client(base_url=service.url, timeout=10) as client:
        answer = post(client, record, tally, PROBE_HEADERS)
    story.check(answer is not None and answer["model_version"] == first["version"], "no prediction over HTTP")
    task = load_project(story.project).config.task
    if isinstance(task, Classification):
        story.check(set(answer.get("probabilities", ())) == set(task.class_names) and "prediction" in answer,
                    f"the answer is not a label with each class's probability: {answer}")
        shown = (f"{json.dumps(answer['prediction'])} (probabilities "
                 f"{json.dumps({k: round(p, 4) for k, p in answer['probabilities'].items()})})")
    else:
        shown = f"{answer['prediction']:.2f} {story.example.answer_unit}"
    story.say(f"service on {service.url}: POST /predict {json.dumps(record)} -> {escape(shown)} "
              f"(version {answer['model_version']}); the clients of scenarios 1-5 send it as test traffic")


def _failing_feature_test(story: Story) -> None:
    bug = story.example.bug
    features = story.project / "features.py"
    source = features.read_text()
    story.check(bug.old in source, f"features.py no longer holds {bug.old!r}")
    features.write_text(source.replace(bug.old, bug.new))
    story.git("commit", "-qam", bug.message)
    proc = story.cd4ml("run", expect=(1,))
    story.check("stopped before training" in proc.stderr, "the failing test did not stop the pipeline")
    story.check(bug.caught_by in proc.stderr, f"{bug.caught_by} did not fail:\n{proc.stderr[-1500:]}")
    story.say(f"[red]feature tests failed[/] ({bug.caught_by}): the pipeline stopped before training; "
              "nothing registered")
    story.git("revert", "--no-edit", "HEAD")
    story.say(f"[dim]git revert: {bug.undone}[/]")


def _better_models(story: Story, service: ServiceProcess, first: dict[str, Any]) -> _Champions:
    example, metric = story.example, story.example.metric
    releases, champion = [], first
    for change in (example.better, example.capacity):
        story.commit(change)
        result = story.run()
        story.check(result["promoted"], f"the model of '{change.message}' did not become champion")
        gained = result["metrics"][metric] - champion["metrics"][metric]
        story.check(gained > 0 if story.greater_is_better else gained < 0,
                    f"'{change.message}' did not improve {metric}: {result['metrics'][metric]:.4f} after "
                    f"{champion['metrics'][metric]:.4f}")
        champion = result
        story.say(f"service swapped to version {result['version']} in "
                  f"{_wait_for_version(service, result['version']):.1f} s")
        releases.append(result)
    return _Champions(*releases)


def _harmful_change(story: Story, service: ServiceProcess, best: dict[str, Any]) -> None:
    story.commit(story.example.harmful)
    harmful = story.run(expect=(3,))
    story.check(not harmful["gate"]["passed"], "the harmful model passed the gate")
    live = httpx.get(f"{service.url}/version", timeout=5).json()["model_version"]
    story.check(live == best["version"], f"the service moved to {live}")
    story.say(f"the service still serves version {live}")


def _revert(story: Story, best: dict[str, Any]) -> None:
    story.git("revert", "--no-edit", "HEAD")
    story.say(f"[dim]git revert: {story.example.reverted}[/]")
    skipped = story.run("--no-promote")
    story.check(skipped["skipped_as"] == best["run_id"],
                f"the reverted project was not recognised as version {best['version']}'s run")
    story.say(f"nothing changed since version {best['version']}'s run: recognised and skipped")
    again = story.run("--no-promote", "--force")
    story.check(again["metrics"] == best["metrics"],
                f"the reverted code did not reproduce version {best['version']}'s metrics")
    story.say(f"retrained with --force: version {again['version']} reproduces version "
              f"{best['version']}'s metrics exactly")


def _rollback_under_load(story: Story, service: ServiceProcess, champions: _Champions, tally: Any) -> None:
    """`cd4ml rollback` while 4 clients send requests: every one answered, by the old release, then the new."""
    from cd4ml.demo.traffic import Tally, Traffic

    better, best = champions.better, champions.best
    rollback_tally = Tally()
    with Traffic(service.url, dict(story.example.probe), rollback_tally, threads=4, pause=0.0):
        time.sleep(1.0)
        t0 = time.monotonic()
        story.cd4ml("rollback", "--reason", "demo: undo the last release")
        swap = _wait_for_version(service, better["version"])
        time.sleep(1.0)
    seen = rollback_tally.version_since(0)
    story.check(rollback_tally.failed == 0, f"{rollback_tally.failed} failed requests during the rollback: "
                                            f"{rollback_tally.failures[:3]}")
    story.check(seen[0] == best["version"] and seen[-1] == better["version"],
                f"responses did not move from {best['version']} to {better['version']}: {seen}")
    story.say(f"rollback to version {better['version']}: live {time.monotonic() - t0 - 1.0:.1f} s after the "
              f"command started ({swap:.1f} s to swap once the alias moved), {rollback_tally.ok} requests "
              f"from 4 clients, 0 failed")
    tally.add(rollback_tally)


def _in_the_wild(story: Story, service: ServiceProcess, tally: Any) -> tuple[list[Scored], list[dict[str, Any]]]:
    """Period by period: score every row over HTTP, receive actuals, monitor; retrain when the policy says so."""
    from cd4ml.config import load_project

    example = story.example
    cfg = load_project(story.project).config
    greater_is_better = story.greater_is_better
    production = example.production(cfg.source.options)
    story.commit(example.retrain_split)
    story.say(production.announcement)
    scored: list[Scored] = []
    reports: list[dict[str, Any]] = []
    champions = []
    last = len(production.periods) - 1
    for index, frames in enumerate(production.periods):
        via_file = index % 2 == 1  # actuals arrive over HTTP one period, as files the next: both paths
        period, files = _score_period(story, service, frames, index, tally, via_file)
        scored.extend(period)
        if via_file:
            story.say(f"actuals of {example.period} {index + 1}: {sum(files.values()):,} rows from "
                      f"{example.actuals_source}, a file a batch (cd4ml feedback {', '.join(files)})")
        service.wait_logged(tally.records, story.actuals_posted)  # the service logs behind its answers
        report = _monitor(story)
        report["period"] = index + 1
        reports.append(report)
        _check_live_accuracy(story, report, period)
        if index < example.change_period:
            story.check(not report["retrain_due"], "monitoring raised an alarm on the unchanged world: "
                        f"{[c['detail'] for c in report['checks'] if c['due']]}")
        elif index == example.change_period:
            latest = judged_window(report) or {"drifted": []}
            story.check(report["retrain_due"] and any(f in latest["drifted"] for f in example.flagged),
                        f"monitoring did not flag {' or '.join(example.flagged)}: drifted {latest['drifted']}")
        if report["retrain_due"]:
            story.check(index < last, f"retraining is still due in the last {example.period}")
            refreshed = story.cd4ml("data", "refresh")
            story.say(refreshed.stdout.strip().splitlines()[-1])
            result = story.run(expect=(0, 3))
            vs = next(c for c in result["gate"]["checks"] if c["name"] == "vs_champion")
            story.say(f"gate on the latest {example.period}: challenger {vs['value']:.4f} vs champion "
                      f"{vs['champion']:.4f} on the same rows")
            if result["promoted"]:
                champions.append((result, vs))
                story.say(f"service swapped to version {result['version']} in "
                          f"{_wait_for_version(service, result['version']):.1f} s")
    story.check(bool(champions), "no retrained model became champion")
    newest, vs = champions[-1]
    beats = vs["champion"] is not None and (vs["value"] > vs["champion"] if greater_is_better
                                            else vs["value"] < vs["champion"])
    story.check(beats, f"the retrained version {newest['version']} did not beat the stale champion on post-change data")
    final = reports[-1]
    story.check(not final["retrain_due"], f"after retraining, monitoring still says retrain: "
                f"{[c['detail'] for c in final['checks'] if c['due']]}")
    metric = example.recovers_on
    before = _period_mean(scored, example.change_period, metric)
    after = _period_mean(scored, last, metric)
    recovered = cfg.task.metric(metric).greater_is_better == (after > before)
    story.check(recovered,
                f"live accuracy did not recover: {metric} {after:.4f} in the last {example.period}, "
                f"{before:.4f} in {example.change_event.removeprefix('the ')}")
    story.say(f"live {metric}: {before:.4f} {example.change_event} -> {after:.4f} in the last {example.period}, "
              f"served by version {newest['version']}")
    return scored, reports


def _period_mean(scored: list[Scored], period: int, metric: str) -> float:
    return float(np.mean([s.metrics[metric] for s in scored if s.period == period]))


def _score_period(story: Story, service: ServiceProcess, frames: tuple[pd.DataFrame, ...], period: int,
                  tally: Any, via_file: bool) -> tuple[list[Scored], dict[str, int]]:
    """Every row of each batch scored over HTTP; its actuals follow, before the next batch is scored (a
    forecast's history features read them): over HTTP, or as a file through `cd4ml feedback` (the files'
    names and rows are returned)."""
    from cd4ml.config import load_project
    from cd4ml.demo.traffic import post

    example = story.example
    cfg = load_project(story.project).config
    task = cfg.task  # as a client scores the answers: with cd4ml's metric functions
    out, files = [], {}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for index, frame in enumerate(frames):
            frame = frame.assign(**{cfg.time_column: frame[cfg.time_column].dt.strftime("%Y-%m-%d")})
            records = frame[cfg.input_columns].to_dict("records")
            answers, versions, fallback = [], set(), 0
            for i in range(0, len(records), BATCH):
                doc = post(client, records[i: i + BATCH], tally)
                if doc is None:
                    raise DemoFailed(f"step '{story.step}': a request to /predict failed: {tally.failures[-1:]}")
                answers.extend(doc["probabilities"] if "probabilities" in doc else doc["predictions"])
                fallback += sum(doc["fallback"])
                versions.add(doc["model_version"])
            actuals = frame[list(example.actual_columns)].to_dict("records")
            ahead = None
            if cfg.history_spec is not None and period == 0 and index == 0 and len(frames) > 1:
                ahead = _ask_ahead(story, client, frames[1], cfg.input_columns, cfg.time_column, tally)
            if via_file:
                path = story.root / f"actuals-{frame[cfg.time_column].iloc[0]}.csv"
                pd.DataFrame(actuals).to_csv(path, index=False)
                story.cd4ml("feedback", str(path))
                files[path.name] = len(actuals)
            else:
                for i in range(0, len(actuals), 1000):
                    resp = client.post("/feedback", json=actuals[i: i + 1000])
                    story.check(resp.status_code == 202, f"POST /feedback answered {resp.status_code}: {resp.text}")
                    story.actuals_posted += len(actuals[i: i + 1000])
            if ahead is not None:
                _ask_ahead(story, client, frames[1], cfg.input_columns, cfg.time_column, tally, refused=ahead)
            actual = task.encode(frame[cfg.target].to_numpy())
            pred = np.array([[a[c] for c in task.class_names] for a in answers]) if isinstance(answers[0], dict) \
                else np.asarray(answers, dtype=np.float64)
            live = task.score(list(example.shown_metrics), actual, pred, cfg.metrics.row_weights(frame))
            regression = pred.ndim == 1
            date = str(frame[cfg.time_column].iloc[0])
            out.append(Scored(
                date=date, period=period, rows=len(records),
                fallback=fallback, versions=tuple(sorted(versions)), metrics=live,
                predicted_total=float(pred.sum() if regression else pred[:, 1].sum()),
                actual_total=float(actual.sum()),
                sample=(tuple(actual[:400].tolist()), tuple(pred[:400].tolist())) if regression else None))
            story.say(f"{date}: {len(records)} {example.batch_noun} by version(s) {', '.join(sorted(versions))}"
                      + (f", {fallback} for unknown categories" if fallback else "")
                      + "; live " + ", ".join(f"{m} {v:.4f}" for m, v in live.items()))
    return out, files


def _ask_ahead(story: Story, client: httpx.Client, next_frame: pd.DataFrame, inputs: list[str], time_column: str,
               tally: Any, refused: str | None = None) -> str:
    """A forecast of the next batch's first record, asked as test traffic: before this batch's actuals
    have arrived it is refused (422: its history features would read them; not a failed request); after,
    answered (counted in `tally`). Returns why it was refused (`refused`: that reason, once the actuals are in)."""
    from cd4ml.demo.traffic import post

    record = next_frame.assign(**{time_column: next_frame[time_column].dt.strftime("%Y-%m-%d")})[inputs].iloc[0]
    test = {"X-Cd4ml-Traffic": "test"}
    day = record[time_column]
    if refused is None:
        resp = client.post("/predict", json=record.to_dict(), headers=test)
        story.check(resp.status_code == 422 and "latest actual" in resp.text,
                    f"a forecast for {day} before the day before's actuals arrived answered {resp.status_code}: "
                    f"{resp.text[:300]}")
        return resp.json()["errors"][0]["reason"]
    answer = post(client, record.to_dict(), tally, headers=test)
    story.check(answer is not None, f"a forecast for {day} once the actuals arrived failed: {tally.failures[-1:]}")
    story.say(f"a forecast for {day} reads the day before's sales: refused before its actuals arrived "
              f"(422: {refused}); once they had, {answer['prediction']:.2f} {story.example.answer_unit}")
    return refused


def _monitor(story: Story) -> dict[str, Any]:
    """`cd4ml monitor --check`: the report, and what the policy says."""
    proc = story.cd4ml("monitor", "--check", "--json", expect=(0, 5))
    report = json.loads(proc.stdout)
    story.check((proc.returncode == 5) == report["retrain_due"], "monitor --check exit code disagrees with its report")
    latest = judged_window(report)
    if latest:
        named = ", ".join(f"{f['name']} (PSI {f['psi']:.2f}{', new: ' + ', '.join(f['new_values']) if f['new_values'] else ''})"
                          for f in latest["features"] if f["alarm"])
        story.say(f"monitor, window {latest['start']}..{latest['end']}: "
                  + (f"[red]drift[/] in {named or ', '.join(latest['drifted'])}" if latest["alarm"] else "no drift"))
    marks = {"due": "[red]retrain[/]", "ok": "[green]ok[/]", "not judged": "[yellow]not judged[/]"}
    for c in report["checks"]:
        if c["enabled"]:
            story.say(f"  {c['name']}: {marks[c['status']]} - {escape(c['detail'])}")
    story.say("cd4ml monitor --check: " + ("[red]exit 5, retraining is due[/]" if report["retrain_due"]
                                           else "[green]exit 0[/]"))
    return report


def _check_live_accuracy(story: Story, report: dict[str, Any], scored: list[Scored]) -> None:
    """The monitor's live accuracy, from the stored predictions and actuals, equals the client's own."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in report["accuracy"]:
        by_day.setdefault(row["day"], []).append(row)
    for s in scored:
        rows = by_day.get(s.date, [])
        story.check(len(rows) == 1 and rows[0]["rows"] == s.rows,
                    f"{s.date}: the monitor scored {[r['rows'] for r in rows]} rows, {s.rows} were served")
        for metric, value in s.metrics.items():
            story.check(abs(rows[0]["metrics"][metric] - value) < 1e-9,
                        f"{s.date}: monitor {metric} {rows[0]['metrics'][metric]} != the client's {value}")


def _count_logged(project: Path) -> int:
    from cd4ml.serve.predlog import read_events

    return sum(1 for _ in read_events(project / ".cd4ml" / "predictions"))


def _summary(story: Story, tally: Any, logged: int, elapsed: float) -> None:
    metric, period = story.example.metric, story.example.period
    table = Table(title="cd4ml demo: releases")
    for col in ("scenario", "version", metric, "baseline", "gate", "champion"):
        table.add_column(col)
    for r in story.releases:
        table.add_row(r["step"].split(":")[0], r["version"], f"{r['metrics'][metric]:.4f}",
                      f"{r['baseline'][metric]:.4f}", "passed" if r["gate"]["passed"] else "rejected",
                      "yes" if r["promoted"] else "")
    story.console.print(table)
    for report in story.monitoring:
        index = report["period"] - 1
        versions = sorted({v for s in story.production if s.period == index for v in s.versions})
        latest = judged_window(report)
        story.console.print(
            f"{period} {report['period']}: live {metric} {_period_mean(story.production, index, metric):.4f} by "
            f"version(s) {', '.join(versions)}; drift: "
            f"{', '.join(latest['drifted']) if latest and latest['alarm'] else 'none'}; monitor --check: "
            f"{'retrain' if report['retrain_due'] else 'ok'}")
    story.console.print(
        f"requests served: {tally.ok} ({tally.records} predictions), failed: {tally.failed}; "
        f"predictions logged: {logged}; demo time {elapsed:.0f} s")
