"""`cd4ml demo`: the CD4ML workshop's six scenarios, played on the grocery world.

Everything is real: a git repository, the `cd4ml` CLI in child processes,
a Delta table, an MLflow store, `cd4ml serve` on loopback with clients
sending requests the whole time. Each scenario checks its own claim and
stops the demo (non-zero exit, naming the step) when it does not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cd4ml.errors import Cd4mlError
from cd4ml.serve.process import ServiceProcess
from cd4ml.verdicts import judged_window

# The first model the team ships: store x item level and weekday only. Later commits add the
# project's full feature set (promotions, calendar, holidays, paydays) and more trees.
FIRST_MODEL = {
    "features.numeric": ["dayofweek"], "features.categorical": ["store_nbr"],
    "features.target_encodings": [["store_nbr", "item_nbr"]], "features.custom": [], "features.holidays": None,
    "features.calendar": ["dayofweek"], "model.params.n_estimators": 100,
}
PRODUCTION_WEEKS = 4
# Store 11 opens in week 2: inputs the model never saw, and sales it cannot know.
NEW_STORE = {"store_nbr": 11, "city": "Quito", "state": "Pichincha", "type": "A", "cluster": 3, "size": 1.3}
NEW_STORE_DAY = 8  # production day on which it opens
GIT = ["git", "-c", "user.name=cd4ml demo", "-c", "user.email=demo@cd4ml.invalid"]


class DemoFailed(Cd4mlError):
    """A scenario's claim did not hold; the message names the step and the reason."""


@dataclass
class Story:
    root: Path
    console: Console
    releases: list[dict[str, Any]] = field(default_factory=list)
    production: list[dict[str, Any]] = field(default_factory=list)
    monitoring: list[dict[str, Any]] = field(default_factory=list)
    step: str = "setup"

    @property
    def project(self) -> Path:
        return self.root / "shop"

    # -- narration and child processes -----------------------------------------------------
    def chapter(self, title: str) -> None:
        self.step = title
        self.console.rule(f"[bold cyan]{title}")

    def say(self, text: str) -> None:
        self.console.print(f"  {text}")

    def check(self, claim: bool, reason: str) -> None:
        if not claim:
            raise DemoFailed(f"step '{self.step}': {reason}")

    def cd4ml(self, *args: str, expect: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        # Training shares two cores with the service and its clients: LightGBM's OpenMP threads
        # must sleep rather than spin while they wait.
        env.update({"OMP_WAIT_POLICY": "PASSIVE", "COLUMNS": "110", "CD4ML_USER": "cd4ml-demo"})
        self.say(f"[dim]$ cd4ml {' '.join(args)}[/]")
        proc = subprocess.run([sys.executable, "-m", "cd4ml.cli", *args], cwd=self.project, env=env,
                              capture_output=True, text=True)
        if proc.returncode not in expect:
            raise DemoFailed(f"step '{self.step}': cd4ml {' '.join(args)} exited {proc.returncode} "
                             f"(expected {expect}):\n{proc.stderr[-2000:]}")
        return proc

    def git(self, *args: str) -> None:
        subprocess.run([*GIT, *args], cwd=self.project, check=True, capture_output=True)

    def commit(self, message: str, **settings: Any) -> None:
        """Edit cd4ml.yaml (dotted keys) and commit, as a developer would."""
        from cd4ml.config import edit_project_file

        edit_project_file(self.project, settings)
        self.git("commit", "-qam", message)
        self.say(f"[dim]git commit: {message}[/]")

    def run(self, *extra: str, expect: tuple[int, ...] = (0,)) -> dict[str, Any]:
        proc = self.cd4ml("run", "--json", *extra, expect=expect)
        result = json.loads(proc.stdout)
        if result["skipped_as"]:
            self.say(f"skipped: same data, code and config as run {result['skipped_as'][:8]} "
                     f"(version {result['version']})")
            return result
        failed = [c["name"] for c in result["gate"]["checks"] if not c["passed"]]
        verdict = "[green]passed[/]" if result["gate"]["passed"] else f"[red]rejected[/] ({', '.join(failed)})"
        self.say(f"version {result['version']}: nwrmsle {result['metrics']['nwrmsle']:.4f} "
                 f"(baseline {result['baseline']['nwrmsle']:.4f}); gate {verdict}; "
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


def run_demo(directory: Path | None, keep: bool, report_path: Path, console: Console) -> Path:
    """Play all scenarios; returns the HTML report's path. Raises DemoFailed naming the step."""
    from cd4ml.demo.report import write_report
    from cd4ml.demo.traffic import Tally, Traffic

    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="cd4ml-demo-"))
    if directory and (root / "shop").exists():
        raise DemoFailed(f"{root / 'shop'} already exists; choose an empty --dir")
    story = Story(root, console)
    tally = Tally()
    service: ServiceProcess | None = None
    started = time.monotonic()
    try:
        story.chapter("1. Plumbing: project, versioned data, first champion, the service")
        first = _first_champion(story)
        service = ServiceProcess(story.project, poll=0.5, log_path=root / "serve.log")
        service.wait_until("/ready", 200)
        record = _first_prediction(story, service, first, tally)
        with Traffic(service.url, record, tally, threads=1, pause=0.05):
            story.chapter("2. Data science: the project's feature tests guard the pipeline")
            _failing_feature_test(story)
            story.chapter("3. ML engineering: better features, then more trees; each release goes live")
            champions = _better_models(story, service)
            story.chapter("4. Continuous deployment: the gate stops a harmful change")
            _harmful_change(story, service, champions.best)
            story.chapter("5. Undo: git revert reproduces the release; rollback under load")
            _revert(story, champions.best)
        _rollback_under_load(story, service, record, champions, tally)

        story.chapter(f"6. In the wild: {PRODUCTION_WEEKS} weeks of forecasts, actuals, monitoring, retraining")
        story.production, story.monitoring = _in_the_wild(story, service, tally)
    finally:
        if service is not None:
            service.stop()
    elapsed = time.monotonic() - started
    logged = _count_logged(story.project)
    story.check(logged == tally.records, f"the prediction log holds {logged} events for "
                                         f"{tally.records} predictions served")
    _summary(story, tally, logged, elapsed)
    report = write_report(report_path, story.releases, story.production, story.monitoring, tally, logged, elapsed)
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

    init_project(story.project, "groceries")
    story.git("init", "-q")
    story.git("add", "-A")
    story.git("commit", "-qm", "groceries project from cd4ml init")
    story.commit("first model: store x item level and weekday", **FIRST_MODEL)
    story.cd4ml("data", "ingest")
    story.say("table version 0: 10 stores x 100 items x 2 years, validated, in Delta Lake")
    first = story.run()
    story.check(first["promoted"], "the first model did not become champion")
    return first


def _first_prediction(story: Story, service: ServiceProcess, first: dict[str, Any], tally: Any) -> dict[str, Any]:
    """One prediction over HTTP; returns the record the clients of scenarios 1-5 keep asking for."""
    from cd4ml.demo.traffic import post

    # The clients of scenarios 1-5 ask for the last training day, so their thousands of identical
    # requests stay out of the production weeks that scenario 6 monitors.
    record = {"date": "2024-12-31", "store_nbr": 3, "item_nbr": 100007, "onpromotion": 1}
    with httpx.Client(base_url=service.url, timeout=10) as client:
        answer = post(client, record, tally)
    story.check(answer is not None and answer["model_version"] == first["version"], "no prediction over HTTP")
    story.say(f"service on {service.url}: POST /predict {json.dumps(record)} -> "
              f"{answer['prediction']:.2f} units (version {answer['model_version']})")
    return record


def _failing_feature_test(story: Story) -> None:
    features = story.project / "features.py"
    features.write_text(features.read_text().replace("(day == 15)", "(day == 14)"))
    story.git("commit", "-qam", "paydays on the 14th (a bug)")
    proc = story.cd4ml("run", expect=(1,))
    story.check("stopped before training" in proc.stderr, "the failing test did not stop the pipeline")
    story.say("[red]feature tests failed[/]: the pipeline stopped before training; nothing registered")
    story.git("revert", "--no-edit", "HEAD")
    story.say("[dim]git revert: paydays back on the 15th[/]")


def _better_models(story: Story, service: ServiceProcess) -> _Champions:
    story.commit("features: promotions, calendar, holidays, paydays, more encodings", **_template_features())
    better = story.run()
    story.check(better["promoted"], "the richer features did not become champion")
    story.say(f"service swapped to version {better['version']} in "
              f"{_wait_for_version(service, better['version']):.1f} s")
    story.commit("params: 300 trees", **{"model.params.n_estimators": 300})
    best = story.run()
    story.check(best["promoted"], "the 300-tree model did not become champion")
    story.say(f"service swapped to version {best['version']} in "
              f"{_wait_for_version(service, best['version']):.1f} s")
    return _Champions(better, best)


def _harmful_change(story: Story, service: ServiceProcess, best: dict[str, Any]) -> None:
    story.commit("params: 5 trees to save time (harmful)", **{"model.params.n_estimators": 5})
    harmful = story.run(expect=(3,))
    story.check(not harmful["gate"]["passed"], "the harmful model passed the gate")
    live = httpx.get(f"{service.url}/version", timeout=5).json()["model_version"]
    story.check(live == best["version"], f"the service moved to {live}")
    story.say(f"the service still serves version {live}")


def _revert(story: Story, best: dict[str, Any]) -> None:
    story.git("revert", "--no-edit", "HEAD")
    story.say("[dim]git revert: back to 300 trees[/]")
    skipped = story.run("--no-promote")
    story.check(skipped["skipped_as"] == best["run_id"],
                f"the reverted project was not recognised as version {best['version']}'s run")
    story.say(f"nothing changed since version {best['version']}'s run: recognised and skipped")
    again = story.run("--no-promote", "--force")
    story.check(again["metrics"] == best["metrics"],
                f"the reverted code did not reproduce version {best['version']}'s metrics")
    story.say(f"retrained with --force: version {again['version']} reproduces version "
              f"{best['version']}'s metrics exactly")


def _rollback_under_load(story: Story, service: ServiceProcess, record: dict[str, Any], champions: _Champions,
                         tally: Any) -> None:
    """`cd4ml rollback` while 4 clients send requests: every one answered, by the old release, then the new."""
    from cd4ml.demo.traffic import Tally, Traffic

    better, best = champions.better, champions.best
    rollback_tally = Tally()
    with Traffic(service.url, record, rollback_tally, threads=4, pause=0.0):
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


def _template_features() -> dict[str, Any]:
    """The scaffold's full feature set, as dotted settings."""
    from cd4ml.scaffold import TEMPLATES

    template = yaml.safe_load((TEMPLATES / "groceries" / "cd4ml.yaml").read_text())["features"]
    return {f"features.{k}": v for k, v in template.items()}


def _in_the_wild(story: Story, service: ServiceProcess, tally: Any) -> tuple[list[dict[str, Any]], list[dict]]:
    """Weekly: forecast every day over HTTP, receive actuals, monitor; retrain when the policy says so."""
    from cd4ml.config import load_project
    from cd4ml.examples.groceries import GroceryWorld, RegimeChange

    cfg = load_project(story.project).config
    options = dict(cfg.source.options)
    end = np.datetime64(str(options.pop("end")), "D")
    options.pop("start")
    # Production starts on the Monday after the training data: a week of it is one calendar window.
    start = end + 1 + (-(end + 1 - np.datetime64("1970-01-05", "D")).astype(int)) % 7
    opens = str(start + NEW_STORE_DAY - 1)
    world = GroceryWorld(**options, regime_changes=[RegimeChange("new_store", opens, NEW_STORE)])
    story.commit("split: gate on the latest week: the team retrains weekly on production data",
                 **{"split.holdout_days": 7})
    story.say(f"store {NEW_STORE['store_nbr']} ({NEW_STORE['city']}) opens on {opens}, in week 2")
    days: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    champions = []
    for week in range(PRODUCTION_WEEKS):
        first = start + 7 * week
        via_file = week % 2 == 1  # actuals arrive over HTTP one week, as a file the next: both paths
        week_days, actuals = _forecast_week(story, service, world, str(first), str(first + 6), tally, via_file)
        days.extend(week_days)
        if via_file:
            path = story.root / f"actuals-week{week + 1}.csv"
            import pandas as pd

            pd.DataFrame(actuals).to_csv(path, index=False)
            story.cd4ml("feedback", str(path))
            story.say(f"actuals of week {week + 1}: {len(actuals):,} rows from the stores' sales file "
                      f"(cd4ml feedback {path.name})")
        report = _monitor(story)
        report["week"] = week + 1
        reports.append(report)
        _check_live_accuracy(story, report, week_days)
        if week == 0:
            story.check(not report["retrain_due"], "monitoring raised an alarm on the unchanged world: "
                        f"{[c['detail'] for c in report['checks'] if c['due']]}")
        elif week == 1:
            latest = judged_window(report) or {"drifted": []}
            story.check(report["retrain_due"] and "store_nbr" in latest["drifted"],
                        f"monitoring did not flag the new store: drifted {latest['drifted']}")
        if report["retrain_due"]:
            story.check(week < PRODUCTION_WEEKS - 1, "retraining is still due in the last week")
            refreshed = story.cd4ml("data", "refresh")
            story.say(refreshed.stdout.strip().splitlines()[-1])
            result = story.run(expect=(0, 3))
            vs = next(c for c in result["gate"]["checks"] if c["name"] == "vs_champion")
            story.say(f"gate on the latest week: challenger {vs['value']:.4f} vs champion "
                      f"{vs['champion']:.4f} on the same rows")
            if result["promoted"]:
                champions.append((week, result, vs))
                story.say(f"service swapped to version {result['version']} in "
                          f"{_wait_for_version(service, result['version']):.1f} s")
    story.check(bool(champions), "no retrained model became champion")
    week, last, vs = champions[-1]
    story.check(vs["champion"] is not None and vs["value"] < vs["champion"],
                f"the retrained version {last['version']} did not beat the stale champion on post-change data")
    final = reports[-1]
    story.check(not final["retrain_due"], f"after retraining, monitoring still says retrain: "
                f"{[c['detail'] for c in final['checks'] if c['due']]}")
    before = np.mean([d["nwrmsle"] for d in days[7:14]])
    after = np.mean([d["nwrmsle"] for d in days[-7:]])
    story.check(after < before, f"live accuracy did not recover: nwrmsle {after:.4f} in the last week, "
                                f"{before:.4f} in the week the store opened")
    story.say(f"live nwrmsle: {before:.4f} the week store {NEW_STORE['store_nbr']} opened -> {after:.4f} in the "
              f"last week, served by version {last['version']}")
    return days, reports


def _forecast_week(story: Story, service: ServiceProcess, world: Any, first: str, last: str, tally: Any,
                   via_file: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Forecasts for every store x item of each day; the day's actuals follow (over HTTP, or kept for a file)."""
    from cd4ml.config import load_project
    from cd4ml.demo.traffic import post

    nwrmsle = load_project(story.project).config.task.metric("nwrmsle")  # as a client scores the forecasts
    days, kept = [], []
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for day in world.days(first, last):
            dates = day["date"].dt.strftime("%Y-%m-%d")
            records = day[["store_nbr", "item_nbr", "onpromotion"]].assign(date=dates).to_dict("records")
            preds, versions, fallback = [], set(), 0
            for i in range(0, len(records), 100):
                doc = post(client, records[i: i + 100], tally)
                if doc is None:
                    raise DemoFailed(f"step '{story.step}': a forecast request failed: {tally.failures[-1:]}")
                preds.extend(doc["predictions"])
                fallback += sum(doc["fallback"])
                versions.add(doc["model_version"])
            # The stores' sales records, with the store's master data (a new store's city is news to the model).
            actuals = day[["date", "store_nbr", "item_nbr", "unit_sales", "expected_sales", "city", "state",
                           "store_type", "cluster"]].assign(date=dates).to_dict("records")
            if via_file:
                kept.extend(actuals)
            else:
                for i in range(0, len(actuals), 1000):
                    resp = client.post("/feedback", json=actuals[i: i + 1000])
                    story.check(resp.status_code == 202, f"POST /feedback answered {resp.status_code}: {resp.text}")
            actual = day["unit_sales"].to_numpy()
            weights = np.where(day["perishable"].to_numpy() == 1, 1.25, 1.0)
            pred = np.asarray(preds)
            live = nwrmsle(actual, pred, weights)
            days.append({"date": str(day["date"].iloc[0].date()), "requests": len(range(0, len(records), 100)),
                         "forecasts": len(records), "fallback": fallback, "versions": sorted(versions),
                         "nwrmsle": live, "actual_total": float(actual.sum()), "forecast_total": float(pred.sum()),
                         "sample": {"actual": actual[:400].tolist(), "forecast": pred[:400].tolist()}})
            story.say(f"{days[-1]['date']}: {len(records)} forecasts by version(s) {', '.join(sorted(versions))}"
                      + (f", {fallback} for unknown stores/items" if fallback else "")
                      + f"; live nwrmsle {live:.4f}")
    return days, kept


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


def _check_live_accuracy(story: Story, report: dict[str, Any], days: list[dict[str, Any]]) -> None:
    """The monitor's live accuracy, from the stored predictions and actuals, equals the clients' own count."""
    by_day = {}
    for row in report["accuracy"]:
        by_day.setdefault(row["day"], []).append(row)
    for d in days:
        rows = by_day.get(d["date"], [])
        story.check(len(rows) == 1 and rows[0]["rows"] == d["forecasts"],
                    f"{d['date']}: the monitor scored {[r['rows'] for r in rows]} rows, {d['forecasts']} were served")
        story.check(abs(rows[0]["metrics"]["nwrmsle"] - d["nwrmsle"]) < 1e-9,
                    f"{d['date']}: monitor nwrmsle {rows[0]['metrics']['nwrmsle']} != clients' {d['nwrmsle']}")


def _count_logged(project: Path) -> int:
    from cd4ml.serve.predlog import read_events

    return sum(1 for _ in read_events(project / ".cd4ml" / "predictions"))


def _summary(story: Story, tally: Any, logged: int, elapsed: float) -> None:
    table = Table(title="cd4ml demo: releases")
    for col in ("scenario", "version", "nwrmsle", "baseline", "gate", "champion"):
        table.add_column(col)
    for r in story.releases:
        table.add_row(r["step"].split(":")[0], r["version"], f"{r['metrics']['nwrmsle']:.4f}",
                      f"{r['baseline']['nwrmsle']:.4f}", "passed" if r["gate"]["passed"] else "rejected",
                      "yes" if r["promoted"] else "")
    story.console.print(table)
    for report in story.monitoring:
        week = story.production[7 * (report["week"] - 1): 7 * report["week"]]
        latest = judged_window(report)
        story.console.print(
            f"week {report['week']}: live nwrmsle {np.mean([d['nwrmsle'] for d in week]):.4f} by version(s) "
            f"{', '.join(sorted({v for d in week for v in d['versions']}))}; drift: "
            f"{', '.join(latest['drifted']) if latest and latest['alarm'] else 'none'}; monitor --check: "
            f"{'retrain' if report['retrain_due'] else 'ok'}")
    story.console.print(
        f"requests served: {tally.ok} ({tally.records} predictions), failed: {tally.failed}; "
        f"predictions logged: {logged}; demo time {elapsed:.0f} s")
