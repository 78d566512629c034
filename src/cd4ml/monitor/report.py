"""`cd4ml monitor`: the production report and the retraining policy.

One pass: compact the prediction log into the store, join actuals, then per release and
per window: traffic, live vs offline accuracy, drift against the champion's reference
profile, and the policy checks (drift, accuracy drop, age) that `--check` turns into an
exit code. The report is a `MonitoringReport` (monitor/document.py): the terminal and the HTML
file read its attributes; its JSON document (`report.json`) is what the dashboard and the
service's /metrics read.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cd4ml.config import Project, ProjectConfig
from cd4ml.files import write_atomic
from cd4ml.monitor import drift
from cd4ml.monitor.document import (AccuracyRow, Champion, Check, DriftSection, DriftWindow, LiveScore,
                                    DELIVERY_DAYS, MonitoringReport, PredictionHistogram, ReleaseOutcomes, ReleaseRow,
                                    Status)
from cd4ml.monitor.live import LiveData, Window, with_attributes
from cd4ml.monitor.outcomes import Outcomes, outcomes
from cd4ml.monitor.profile import ReleaseProfile, rows_per_day
from cd4ml.monitor.profile import load as load_profile
from cd4ml.release.package import Release
from cd4ml.task import Classification, Task
from cd4ml.verdicts import NOT_JUDGED

if TYPE_CHECKING:
    from cd4ml.release.listing import ListedRelease

REPORT_FILE = "report.json"
HTML_FILE = "report.html"


def _watched(cfg: ProjectConfig, release: Release | None, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Watched columns and the metric weight column of every row."""
    derived = with_attributes(cfg, release, frame)
    wanted = [*cfg.monitored_columns, *([cfg.metrics.weight.column] if cfg.metrics.weight else [])]
    return {c: np.asarray(derived[c]) for c in dict.fromkeys(wanted) if c in derived}


def _metrics(cfg: ProjectConfig, task: Task, actual: np.ndarray, pred: np.ndarray,
             weights: np.ndarray | None) -> dict[str, float]:
    return task.score([cfg.metrics.primary, *cfg.metrics.report], actual, pred, weights)


def _weights(cfg: ProjectConfig, watched: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray | None:
    if cfg.metrics.weight is None or cfg.metrics.weight.column not in watched:
        return None
    return cfg.metrics.row_weights(pd.DataFrame({cfg.metrics.weight.column: watched[cfg.metrics.weight.column][mask]}))


def _scored_arrays(cfg: ProjectConfig, frame: pd.DataFrame, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every frame row's actual and prediction as the task's metrics take them: regression floats (NaN
    without an actual); a classifier's actual class indices (-1 without) and (n, k) stored probabilities."""
    task = cfg.task
    column = frame[f"actual_{cfg.target}"]
    if not isinstance(task, Classification):
        return (pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64),
                frame["prediction"].to_numpy(dtype=np.float64))
    actual = np.full(len(frame), -1, dtype=np.int64)
    if scored.any():
        actual[scored] = task.encode(column.to_numpy(dtype=object)[scored])
    pred = np.stack(frame["probabilities"].to_numpy()) if len(frame) else np.zeros((0, len(task.classes)))
    return actual, pred


def _masks(live: LiveData) -> list[tuple[Window, np.ndarray]]:
    """The report's calendar windows that hold rows, each with its rows of the frame; oldest first."""
    if live.frame.empty:
        return []
    d = live.frame["day"].dt.date.to_numpy()
    masks = [(w, (d >= w.start) & (d <= w.end)) for w in live.windows]
    return [(w, m) for w, m in masks if m.any()]


def _drift_windows(cfg: ProjectConfig, live: LiveData, watched: dict[str, np.ndarray], version: str,
                   profile: ReleaseProfile, actual: np.ndarray, pred: np.ndarray) -> list[DriftWindow]:
    d = cfg.monitoring.drift
    limits = {"psi_alarm": d.psi_alarm, "ks_alarm": d.ks_alarm, "bias_alarm": d.bias_alarm, "min_rows": d.min_rows}
    f, task = live.frame, cfg.task
    mine = (f["model_version"] == version).to_numpy()
    scored = mine & live.has_actual
    spec = {"target_transform": profile.target_transform}
    inputs = {c: v for c, v in watched.items() if c in cfg.monitored_columns}
    # Inputs drift whoever served them; predictions and residuals are the reference release's own.
    residual = np.full(len(f), np.nan)
    residual[scored] = task.residual(spec, actual[scored], pred[scored])
    probabilities = None
    answered, truth = pred, actual
    if pred.ndim == 2:  # a classifier: the answered and actual classes, and each class's probability
        names = np.asarray(task.class_names, dtype=object)  # as the profile names them
        answered = names[task.encode(f["prediction"].to_numpy(dtype=object))]
        truth = names[np.maximum(actual, 0)]
        probabilities = dict(zip(names.tolist(), pred.T))
    out = []
    for w, m in _masks(live):
        own, ok = m & mine, m & scored
        window = drift.compare(profile.distributions, {c: v[m] for c, v in inputs.items()},
                               answered[own] if own.any() else None, truth[ok] if ok.any() else None,
                               residual[m] if ok.any() else None, **limits,
                               probabilities={c: v[own] for c, v in probabilities.items()}
                               if probabilities and own.any() else None)
        out.append(DriftWindow(w, window.rows >= d.min_rows, window))
    return out


def _prediction_histogram(live: LiveData, version: str, profile: ReleaseProfile) -> PredictionHistogram | None:
    """Reference vs live predictions of `version` over the profile's quantile bins (fractions)."""
    ref = profile.distributions.prediction
    # None for a classifier's answered classes: their shares are in the drift table.
    if not isinstance(ref, drift.NumericSummary) or not ref.sample:
        return None
    f = live.frame
    pred = f.loc[f["model_version"] == version, "prediction"].to_numpy(dtype=np.float64)
    if not len(pred):
        return None
    inner = np.asarray(ref.edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(inner, pred, side="right"), minlength=len(inner) + 1)
    # The profile's outer bins are open-ended; for drawing, they end at the smallest and largest value seen.
    low, high = min(ref.sample[0], float(pred.min())), max(ref.sample[-1], float(pred.max()))
    return PredictionHistogram(version, [low, *inner.tolist(), high], list(ref.fractions),
                               (counts / counts.sum()).tolist())


@dataclass(frozen=True)
class ChampionWindow:
    """The champion's evidence in one calendar window: its predictions, those with an actual, their metrics."""

    window: Window
    served: int
    scored: int
    metrics: dict[str, float] | None
    fallback_share: float | None


def _served_tasks(cfg: ProjectConfig, project: Project, registry: Any, versions: np.ndarray,
                 pred: np.ndarray) -> dict[str, Task]:
    """Each served version's own task, so live metrics decide classes as that release answered them (its
    threshold may have been chosen on its training data); {} for regression (the project's task)."""
    if pred.ndim == 1:
        return {}
    return {v: registry.load(v, project.release_cache).task for v in sorted(set(versions.tolist()))}


def _releases(project: Project, registry: Any, listed: list[ListedRelease], live: LiveData,
              watched: dict[str, np.ndarray], actual: np.ndarray, pred: np.ndarray,
              versions: np.ndarray, tasks: dict[str, Task]) -> list[ReleaseRow]:
    """Per release, newest first: gate, offline and live metrics (and a classifier's outcomes)."""
    cfg = project.config
    scored = live.has_actual if not live.frame.empty else np.zeros(0, dtype=bool)
    releases = []
    for row in reversed(listed):
        m = scored & (versions == row.version)
        score = LiveScore(int(m.sum()), _metrics(cfg, tasks.get(row.version, cfg.task), actual[m], pred[m],
                                                 _weights(cfg, watched, m))) if m.any() else None
        outcome = _outcomes(cfg, project, registry, row.version, live.frame["prediction"][m], actual[m], pred[m]) \
            if pred.ndim == 2 and (m.any() or row.champion) else None
        releases.append(ReleaseRow(row.version, row.gate, row.created, row.champion, row.metrics, score, outcome))
    return releases


def _outcomes(cfg: ProjectConfig, project: Project, registry: Any, version: str, answered: pd.Series,
              actual: np.ndarray, pred: np.ndarray) -> ReleaseOutcomes:
    """A classifier release's confusion matrix and calibration curve: live (its scored rows, with the classes
    it answered) and offline (from its profile; None for a release packaged without them)."""
    task = cfg.task
    names = task.class_names
    live: Outcomes | None = outcomes(names, actual, pred, task.encode(answered.to_numpy(dtype=object))) \
        if len(actual) else None
    profile = load_profile(registry.load(version, project.release_cache).folder)
    return ReleaseOutcomes(live, profile.outcomes if profile else None)


def _champion_windows(cfg: ProjectConfig, live: LiveData, watched: dict[str, np.ndarray], version: str,
                      actual: np.ndarray, pred: np.ndarray, task: Task) -> list[ChampionWindow]:
    f = live.frame
    mine = (f["model_version"].astype(str) == version).to_numpy()
    fallback = f["fallback"].to_numpy(dtype=bool)
    out = []
    for w, m in _masks(live):
        served = m & mine
        ok = served & live.has_actual
        out.append(ChampionWindow(w, int(served.sum()), int(ok.sum()),
                                  _metrics(cfg, task, actual[ok], pred[ok], _weights(cfg, watched, ok))
                                  if ok.any() else None,
                                  float(fallback[served].mean()) if served.any() else None))
    return out


def accuracy_min_rows(cfg: ProjectConfig, profile: ReleaseProfile | None) -> int:
    """Scored rows a window needs before live accuracy is judged: `monitoring.accuracy.min_rows`, else half
    the rows a window of the champion's holdout held, within 30..1000 (1000 without a holdout record)."""
    if cfg.monitoring.accuracy.min_rows is not None:
        return cfg.monitoring.accuracy.min_rows
    per_day = rows_per_day(profile)
    if per_day is None:
        return 1000
    return int(min(1000, max(30, round(per_day * cfg.monitoring.window_days / 2))))


def _check(name: str, enabled: bool, status: Status, detail: str, rows: int | None = None,
           min_rows: int | None = None) -> Check:
    """One retraining check: `status` is "due", "ok" or "not judged" (too little evidence); "off" when disabled."""
    return Check(name, enabled, status if enabled else "off", enabled and status == "due", status != NOT_JUDGED,
                 detail, rows, min_rows)


def _span(w: Window) -> str:
    return f"window {w.start.isoformat()}..{w.end.isoformat()}"


def _drift_check(cfg: ProjectConfig, windows: list[DriftWindow], profiled: bool) -> Check:
    on, need = cfg.monitoring.retrain.on_drift, cfg.monitoring.drift.min_rows
    judged = [w for w in windows if w.judged]
    latest = windows[-1] if windows else None
    if not profiled:
        return _check("drift", on, NOT_JUDGED, "no champion with a reference profile", rows=0, min_rows=need)
    if not judged:
        rows = latest.drift.rows if latest else 0
        where = f"{_span(latest.window)}: " if latest else "no production data yet: "
        return _check("drift", on, NOT_JUDGED, f"{where}{rows:,} rows ({need:,} needed)", rows=rows, min_rows=need)
    w, last = judged[-1], windows[-1]
    later = "" if w is last else f"; later {_span(last.window)} not judged ({last.drift.rows:,} rows, {need:,} needed)"
    if w.drift.alarm:
        return _check("drift", on, "due", f"{_span(w.window)}: drifted: {', '.join(w.drift.drifted)}{later}",
                      rows=w.drift.rows, min_rows=need)
    return _check("drift", on, "ok", f"{_span(w.window)}: no drift in {w.drift.rows:,} rows{later}",
                  rows=w.drift.rows, min_rows=need)


def _accuracy_check(cfg: ProjectConfig, windows: list[ChampionWindow], offline: float | None,
                    need: int) -> Check:
    on, primary, margin = cfg.monitoring.retrain.on_accuracy, cfg.metrics.primary, cfg.monitoring.accuracy.margin
    if offline is None:
        return _check("accuracy", on, NOT_JUDGED, "no champion with offline metrics", rows=0, min_rows=need)
    judged = [c for c in windows if c.scored >= need and c.metrics is not None]
    if not judged:
        most = max((c.scored for c in windows), default=0)
        return _check("accuracy", on, NOT_JUDGED, f"at most {most:,} scored rows of the champion in a window "
                                                  f"({need:,} needed)", rows=most, min_rows=need)
    c = judged[-1]
    live = c.metrics[primary]  # type: ignore[index]
    worse = cfg.task.metric(primary).worse_by(live, offline)
    detail = (f"{_span(c.window)}: live {primary} {live:.4f} vs offline {offline:.4f} ({worse:+.1%}; retrain "
              f"beyond {margin:+.0%}) over {c.scored:,} rows")
    return _check("accuracy", on, "due" if worse > margin else "ok", detail, rows=c.scored, min_rows=need)


def _coverage_check(cfg: ProjectConfig, windows: list[ChampionWindow]) -> Check:
    limit, need = cfg.monitoring.retrain.max_fallback_share, cfg.monitoring.drift.min_rows
    judged = [c for c in windows if c.served >= need and c.fallback_share is not None]
    if not judged:
        most = max((c.served for c in windows), default=0)
        return _check("coverage", limit is not None, NOT_JUDGED, f"at most {most:,} predictions by the champion "
                                                                 f"in a window ({need:,} needed)",
                      rows=most, min_rows=need)
    c = judged[-1]
    share = c.fallback_share or 0.0
    detail = (f"{_span(c.window)}: {share:.1%} of the champion's {c.served:,} predictions were for inputs it never "
              "saw" + (f" (limit {limit:.1%})" if limit is not None else ""))
    return _check("coverage", limit is not None, "due" if limit is not None and share > limit else "ok", detail,
                  rows=c.served, min_rows=need)


def _age_check(cfg: ProjectConfig, champion: Champion | None) -> Check:
    age, limit = champion.age_days if champion else None, cfg.monitoring.retrain.max_age_days
    if age is None:
        return _check("age", limit is not None, NOT_JUDGED, "no champion")
    detail = f"champion is {age:.1f} days old" + (f" (limit {limit:g})" if limit is not None else " (no limit)")
    return _check("age", limit is not None, "due" if limit is not None and age > limit else "ok", detail)


def build_report(project: Project, *, compact: bool = True) -> MonitoringReport:
    """Compact the log (unless `compact` is False) and compute the report (`to_json()`: report.json)."""
    from cd4ml.monitor.store import PredictionStore
    from cd4ml.release.delivery import delivery_stats
    from cd4ml.release.listing import list_releases
    from cd4ml.release.registry import Registry

    cfg = project.config
    store = PredictionStore(project)
    if compact:
        store.compact()
    registry = Registry.for_project(project)
    listed = list_releases(registry)
    history = registry.history()
    champion_mv = registry.champion()
    now = dt.datetime.now(dt.timezone.utc)

    champion = None
    release = profile = None
    if champion_mv is not None:
        version = str(champion_mv.version)
        since = next((e.time for e in reversed(history) if e.to_version == version), None)
        champion = Champion(version, since, (now - since).total_seconds() / 86400 if since else None)
        release = registry.load(version, project.release_cache)
        profile = load_profile(release.folder)

    live = LiveData(cfg, store.predictions(), store.actuals(), windows=cfg.monitoring.windows)
    f = live.frame
    watched = _watched(cfg, release, f) if not f.empty else {}
    scored = live.has_actual if not f.empty else np.zeros(0, dtype=bool)
    actual, pred = _scored_arrays(cfg, f, scored)
    versions = f["model_version"].astype(str).to_numpy()
    tasks = _served_tasks(cfg, project, registry, versions, pred)
    days = f["day"].dt.date.to_numpy() if not f.empty else np.array([])

    accuracy = [AccuracyRow(day, version, int(m.sum()), _metrics(cfg, tasks.get(version, cfg.task), actual[m], pred[m],
                                                                 _weights(cfg, watched, m)))
                for day in sorted(set(days[scored]))
                for version in sorted(set(versions[scored & (days == day)]), key=int)
                for m in [scored & (days == day) & (versions == version)]]

    releases = _releases(project, registry, listed, live, watched, actual, pred, versions, tasks)

    windows: list[DriftWindow] = []
    evidence: list[ChampionWindow] = []
    if champion is not None and not f.empty:
        if profile is not None:
            windows = _drift_windows(cfg, live, watched, champion.version, profile, actual, pred)
        evidence = _champion_windows(cfg, live, watched, champion.version, actual, pred,
                                     tasks.get(champion.version, cfg.task))
    offline = next((x.offline.get(cfg.metrics.primary) for x in releases
                    if champion and x.version == champion.version), None)
    checks = [_drift_check(cfg, windows, profile is not None),
              _accuracy_check(cfg, evidence, offline, accuracy_min_rows(cfg, profile)),
              _coverage_check(cfg, evidence), _age_check(cfg, champion)]
    delivery = delivery_stats(registry, project.root, dt.timedelta(days=DELIVERY_DAYS), now)
    return MonitoringReport(
        cfg.project, cfg.registry.model_name, now, cfg.metrics.primary,
        "max" if cfg.task.metric(cfg.metrics.primary).greater_is_better else "min", cfg.monitoring.window_days,
        champion, live.traffic(),
        _prediction_histogram(live, champion.version, profile) if champion and profile else None,
        accuracy, releases, history, live.counts,
        DriftSection(champion.version if champion and profile else None, windows), live.excluded,
        store.quarantined(), checks, delivery)


def write_report(project: Project, report: MonitoringReport, html: Path | None = None) -> tuple[Path, Path]:
    """Write report.json into the monitor folder and the self-contained HTML page; returns both paths."""
    from cd4ml.monitor.html import render_page

    folder = project.monitor_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    write_atomic(path, json.dumps(report.to_json(), indent=1))  # the service's /metrics reads it: never half of it
    html = html or folder / HTML_FILE
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_page(report), encoding="utf-8")
    return path, html


def print_report(report: MonitoringReport, console: Any) -> None:
    """The report for a terminal: per release, the latest drift window, the checks."""
    from rich.markup import escape
    from rich.table import Table

    primary = report.primary_metric
    champion = report.champion
    console.print(f"[bold]{escape(report.project)}[/]: model {escape(report.model_name)}, champion "
                  f"{'v' + champion.version if champion else 'none'}; feedback: "
                  + ", ".join(f"{k} {v:,}" for k, v in report.feedback.items()))
    if report.delivery is not None:
        console.print(f"Delivery, the last {DELIVERY_DAYS} days: {report.delivery.summary()}")
    traffic: dict[str, dict[str, float]] = {}
    for row in report.traffic:
        t = traffic.setdefault(row.model_version, {"predictions": 0, "p99": 0.0})
        t["predictions"] += row.predictions
        t["p99"] = max(t["p99"], row.latency_p99_ms)
    table = Table(title="Releases: offline (holdout) vs live (actuals)")
    for col in ("version", "gate", "champion", f"offline {primary}", f"live {primary}", "scored rows",
                "predictions", "worst day p99 ms"):
        table.add_column(col)
    for r in report.releases:
        live = r.live
        t = traffic.get(r.version)
        offline = r.offline.get(primary)
        table.add_row(r.version, r.gate or "", "yes" if r.champion else "",
                      f"{offline:.4f}" if offline is not None else "",
                      f"{live.metrics[primary]:.4f}" if live else "", f"{live.rows:,}" if live else "",
                      f"{int(t['predictions']):,}" if t else "", f"{t['p99']:.1f}" if t else "")
    console.print(table)
    for r in report.releases:
        if r.outcomes:
            _print_outcomes(r.version, r.outcomes, console)
    judged = report.drift.judged_window
    if judged:
        w = judged.drift
        table = Table(title=f"Drift {judged.window.start}..{judged.window.end} ({w.rows:,} rows"
                            f"{'' if judged.judged else ', too few to judge'}) vs the reference of "
                            f"v{report.drift.reference_version}")
        for col in ("column", "PSI", "KS", "new values", "drifted"):
            table.add_column(col)
        # Values come from requests: escaped, so "[link=...]" or "x[/]" is shown as text, never read as markup.
        rows = [(escape(f.name), f.psi, f.ks, escape(", ".join(map(str, f.new_values[:5]))), f.alarm)
                for f in w.features]
        rows += [(k, o.psi, o.ks, "", o.alarm) for k, o in (("prediction", w.prediction), ("target", w.target)) if o]
        rows += [(escape(f"probability of {c.name}"), c.psi, c.ks, "", c.alarm) for c in w.probabilities or []]
        for name, psi, ks, new, alarm in rows:
            table.add_row(name, f"{psi:.3f}" if psi is not None else "", f"{ks:.3f}" if ks is not None else "",
                          new, "[red]yes[/]" if alarm else "")
        for s in w.segments:
            if s.alarm:
                table.add_row(escape(f"{s.feature} = {s.value}"), "", "", f"bias {s.bias:+.2f} sd "
                              f"({s.rows} rows)", "[red]yes[/]")
        console.print(table)
    excluded = report.excluded
    if excluded.test or excluded.out_of_range:
        console.print(f"Kept out of windows, accuracy and checks: {excluded.test:,} test-traffic prediction(s), "
                      f"{excluded.out_of_range:,} dated out of range"
                      + (f" (e.g. {', '.join(excluded.out_of_range_days)}; more than "
                         f"{excluded.plausible_days} days from the usual lead)" if excluded.out_of_range else ""),
                      markup=False)
    quarantined = report.quarantined
    if any(quarantined.values()):
        console.print(f"Quarantined: {quarantined.get('predictions', 0):,} prediction and "
                      f"{quarantined.get('actuals', 0):,} actuals log line(s) that could not be stored, kept "
                      "as they were in the prediction store's quarantine/ folder", markup=False)
    marks = {"due": ("retrain", "red"), "ok": ("ok", "green"), NOT_JUDGED: (NOT_JUDGED, "yellow"),
             "off": ("off", "dim")}
    for c in report.checks:
        text, style = marks[c.status]
        console.print(f"  {escape(c.name):<9} [{style}]{text:<10}[/] {escape(c.detail)}")
    console.print(verdict(report))


def _print_outcomes(version: str, doc: ReleaseOutcomes, console: Any) -> None:
    """A classifier release's confusion matrix and calibration curve, live next to offline (holdout)."""
    from rich.markup import escape
    from rich.table import Table

    live, offline = doc.live, doc.offline
    first = live or offline
    if first is None:
        return
    classes = first.classes
    table = Table(title=f"v{version}: confusion matrix, live / offline rows (rows: actual, columns: answered)")
    table.add_column("actual")
    for c in classes:
        table.add_column(escape(c))
    for i, c in enumerate(classes):
        table.add_row(escape(c), *[f"{live.confusion[i][j] if live else '-'} / "
                                   f"{offline.confusion[i][j] if offline else '-'}" for j in range(len(classes))])
    console.print(table)
    table = Table(title=f"v{version}: calibration of the probability of {escape(first.calibration_of)}, "
                        "live / offline")
    for col in ("bin", "rows", "mean predicted", "observed"):
        table.add_column(col)

    def cell(curve: Outcomes | None, key: str, b: int) -> str:
        value = getattr(curve, key)[b] if curve else None
        return "-" if value is None else f"{value:,}" if key == "bin_rows" else f"{value:.3f}"

    bins = len(first.bin_rows)
    for b in range(bins):
        table.add_row(f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                      *[f"{cell(live, k, b)} / {cell(offline, k, b)}" for k in ("bin_rows", "predicted", "observed")])
    console.print(table)


def verdict(report: MonitoringReport) -> str:
    """The report's last line, in Rich markup: retraining due, or not, and which checks could not be judged."""
    unjudged = report.not_judged
    if report.retrain_due:
        return "[bold red]Retraining is due.[/]" + (f" Not judged: {', '.join(unjudged)}." if unjudged else "")
    if unjudged:
        return f"[yellow]No retraining due, but not judged (too little evidence): {', '.join(unjudged)}.[/]"
    return "[green]No retraining due.[/]"
