"""`cd4ml monitor`: the production report and the retraining policy.

One pass: compact the prediction log into the store, join actuals, then per release and
per window: traffic, live vs offline accuracy, drift against the champion's reference
profile, and the policy checks (drift, accuracy drop, age) that `--check` turns into an
exit code. The report is one JSON document (shape: `report.json` in the docs); the
terminal, the HTML file, the dashboard and the service's /metrics all read it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import Project, ProjectConfig
from cd4ml.evaluate.metrics import METRICS, row_weights, score
from cd4ml.features.transforms import forward_target
from cd4ml.monitor import drift
from cd4ml.monitor.live import LiveData, with_attributes
from cd4ml.monitor.profile import load as load_profile
from cd4ml.release.package import Release

REPORT_FILE = "report.json"
HTML_FILE = "report.html"


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _watched(cfg: ProjectConfig, release: Release | None, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Watched columns and the metric weight column of every row."""
    derived = with_attributes(cfg, release, frame)
    wanted = [*cfg.monitored_columns, *([cfg.metrics.weight.column] if cfg.metrics.weight else [])]
    return {c: np.asarray(derived[c]) for c in dict.fromkeys(wanted) if c in derived}


def _metrics(cfg: ProjectConfig, actual: np.ndarray, pred: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    return score([cfg.metrics.primary, *cfg.metrics.report], actual, pred, weights)


def _weights(cfg: ProjectConfig, watched: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray | None:
    if cfg.metrics.weight is None or cfg.metrics.weight.column not in watched:
        return None
    return row_weights(cfg, pd.DataFrame({cfg.metrics.weight.column: watched[cfg.metrics.weight.column][mask]}))


def _windows(cfg: ProjectConfig, days: pd.Series) -> list[tuple[dt.date, dt.date, np.ndarray]]:
    """The last `monitoring.windows` windows of `window_days`, ending at the latest day; oldest first."""
    if days.empty:
        return []
    d = days.dt.date.to_numpy()
    last = max(d)
    size = cfg.monitoring.window_days
    out = []
    for k in reversed(range(cfg.monitoring.windows)):
        end = last - dt.timedelta(days=k * size)
        start = end - dt.timedelta(days=size - 1)
        mask = (d >= start) & (d <= end)
        if mask.any():
            out.append((start, end, mask))
    return out


def _drift_windows(cfg: ProjectConfig, live: LiveData, watched: dict[str, np.ndarray], version: str,
                   profile: dict[str, Any]) -> list[dict[str, Any]]:
    d = cfg.monitoring.drift
    limits = {"psi_alarm": d.psi_alarm, "ks_alarm": d.ks_alarm, "bias_alarm": d.bias_alarm, "min_rows": d.min_rows}
    f = live.frame
    mine = (f["model_version"] == version).to_numpy()
    scored = mine & live.has_actual
    actual = pd.to_numeric(f[f"actual_{cfg.target}"], errors="coerce").to_numpy(dtype=np.float64)
    pred = f["prediction"].to_numpy(dtype=np.float64)
    spec = {"target_transform": profile.get("target_transform", "none")}
    inputs = {c: v for c, v in watched.items() if c in cfg.monitored_columns}
    # Inputs drift whoever served them; predictions and residuals are the reference release's own.
    residual = np.where(scored, forward_target(spec, actual) - forward_target(spec, pred), np.nan)
    out = []
    for start, end, m in _windows(cfg, f["day"]):
        own, ok = m & mine, m & scored
        window = drift.compare(profile, {c: v[m] for c, v in inputs.items()}, pred[own] if own.any() else None,
                               actual[ok] if ok.any() else None, residual[m] if ok.any() else None, **limits)
        out.append({"start": start.isoformat(), "end": end.isoformat(), **window})
    return out


def _prediction_histogram(live: LiveData, version: str, profile: dict[str, Any]) -> dict[str, Any] | None:
    """Reference vs live predictions of `version` over the profile's quantile bins (fractions)."""
    ref = profile.get("prediction") or {}
    f = live.frame
    pred = f.loc[f["model_version"] == version, "prediction"].to_numpy(dtype=np.float64)
    if not len(pred) or not ref.get("sample"):
        return None
    inner = np.asarray(ref["edges"], dtype=np.float64)
    counts = np.bincount(np.searchsorted(inner, pred, side="right"), minlength=len(inner) + 1)
    # The profile's outer bins are open-ended; for drawing, they end at the smallest and largest value seen.
    low, high = min(ref["sample"][0], float(pred.min())), max(ref["sample"][-1], float(pred.max()))
    return {"version": version, "edges": [low, *inner.tolist(), high], "reference": list(ref["fractions"]),
            "live": (counts / counts.sum()).tolist()}


def _checks(cfg: ProjectConfig, windows: list[dict[str, Any]], champion: dict[str, Any] | None,
            releases: list[dict[str, Any]], recent: dict[str, Any] | None) -> list[dict[str, Any]]:
    r = cfg.monitoring.retrain
    primary = cfg.metrics.primary
    checks = []
    latest = windows[-1] if windows else None
    if latest is None:
        detail, due = "no production data yet", False
    elif latest["alarm"]:
        detail, due = f"window {latest['start']}..{latest['end']}: drifted: {', '.join(latest['drifted'])}", True
    else:
        detail, due = f"window {latest['start']}..{latest['end']}: no drift in {latest['rows']} rows", False
    checks.append({"name": "drift", "enabled": r.on_drift, "due": due and r.on_drift, "detail": detail})

    offline = next((x["offline"].get(primary) for x in releases if champion and x["version"] == champion["version"]),
                   None)
    need = cfg.monitoring.accuracy.min_rows
    if champion is None or offline is None:
        detail, due = "no champion with offline metrics", False
    elif recent is None or recent["metrics"] is None or recent["rows"] < need:
        detail, due = f"{recent['rows'] if recent else 0} scored rows in the latest window (need {need})", False
    else:
        worse = METRICS[primary].worse_by(recent["metrics"][primary], offline)
        due = worse > cfg.monitoring.accuracy.margin
        detail = (f"live {primary} {recent['metrics'][primary]:.4f} vs offline {offline:.4f} "
                  f"({worse:+.1%}; retrain beyond {cfg.monitoring.accuracy.margin:+.0%}) over {recent['rows']} rows")
    checks.append({"name": "accuracy", "enabled": r.on_accuracy, "due": due and r.on_accuracy, "detail": detail})

    share, limit = (recent or {}).get("fallback_share"), r.max_fallback_share
    due = share is not None and limit is not None and share > limit
    detail = "no predictions by the champion in the latest window" if share is None else (
        f"{share:.1%} of the champion's predictions in the latest window were for inputs it never saw"
        + (f" (limit {limit:.1%})" if limit is not None else ""))
    checks.append({"name": "coverage", "enabled": limit is not None, "due": due, "detail": detail})

    age = champion["age_days"] if champion else None
    limit = r.max_age_days
    due = age is not None and limit is not None and age > limit
    detail = "no champion" if age is None else f"champion is {age:.1f} days old" + (
        f" (limit {limit:g})" if limit is not None else " (no limit)")
    checks.append({"name": "age", "enabled": limit is not None, "due": due, "detail": detail})
    return checks


def build_report(project: Project, *, compact: bool = True) -> dict[str, Any]:
    """Compact the log (unless `compact` is False) and compute the report document."""
    from cd4ml.monitor.store import PredictionStore
    from cd4ml.release.listing import list_releases
    from cd4ml.release.registry import Registry

    cfg = project.config
    store = PredictionStore(project)
    if compact:
        store.compact()
    registry = Registry.for_project(project)
    listed = list_releases(registry, cfg.metrics.primary)
    history = registry.history()
    champion_mv = registry.champion()
    now = dt.datetime.now(dt.timezone.utc)

    champion = None
    release = profile = None
    if champion_mv is not None:
        version = str(champion_mv.version)
        since = next((e.time for e in reversed(history) if e.to_version == version), None)
        champion = {"version": version, "released_at": _iso(since),
                    "age_days": (now - since).total_seconds() / 86400 if since else None}
        release = registry.load(version, project.state_dir / "cache" / "releases")
        profile = load_profile(release.folder)

    period = cfg.monitoring.window_days * cfg.monitoring.windows
    live = LiveData(cfg, store.predictions(), store.actuals(), days=period)
    f = live.frame
    watched = _watched(cfg, release, f) if not f.empty else {}
    scored = live.has_actual if not f.empty else np.zeros(0, dtype=bool)
    actual = pd.to_numeric(f[f"actual_{cfg.target}"], errors="coerce").to_numpy(dtype=np.float64)
    pred = f["prediction"].to_numpy(dtype=np.float64)
    versions = f["model_version"].astype(str).to_numpy()
    days = f["day"].dt.date.to_numpy() if not f.empty else np.array([])

    accuracy = []
    for day in sorted(set(days[scored])):
        for version in sorted(set(versions[scored & (days == day)]), key=int):
            m = scored & (days == day) & (versions == version)
            accuracy.append({"day": day.isoformat(), "model_version": version, "rows": int(m.sum()),
                             "metrics": _metrics(cfg, actual[m], pred[m], _weights(cfg, watched, m))})

    releases = []
    for row in reversed(listed):
        m = scored & (versions == row["version"])
        releases.append({"version": row["version"], "gate": row["gate"], "created_at": row["created"],
                         "champion": row["champion"], "offline": row["metrics"],
                         "live": {"rows": int(m.sum()), "metrics": _metrics(cfg, actual[m], pred[m],
                                                                            _weights(cfg, watched, m))}
                         if m.any() else None})

    windows: list[dict[str, Any]] = []
    recent = None
    if champion is not None and not f.empty:
        if profile is not None:
            windows = _drift_windows(cfg, live, watched, champion["version"], profile)
        last = max(days)
        served = (versions == champion["version"]) & (days > last - dt.timedelta(days=cfg.monitoring.window_days))
        m = scored & served
        recent = {"rows": int(m.sum()), "metrics": _metrics(cfg, actual[m], pred[m], _weights(cfg, watched, m))
                  if m.any() else None,
                  "fallback_share": float(f["fallback"].to_numpy()[served].mean()) if served.any() else None}

    checks = _checks(cfg, windows, champion, releases, recent)
    return {
        "format": 1, "project": cfg.project, "model_name": cfg.registry.model_name, "generated_at": _iso(now),
        "primary_metric": cfg.metrics.primary,
        "direction": "max" if METRICS[cfg.metrics.primary].greater_is_better else "min",
        "window_days": cfg.monitoring.window_days, "champion": champion,
        "traffic": live.traffic(),
        "prediction_histogram": _prediction_histogram(live, champion["version"], profile)
        if champion and profile else None,
        "accuracy": accuracy, "releases": releases,
        "timeline": [{"time": _iso(e.time), "kind": e.kind, "from": e.from_version, "to": e.to_version,
                      "by": e.who, "why": e.why} for e in history],
        "feedback": live.counts,
        "drift": {"reference_version": champion["version"] if champion and profile else None, "windows": windows},
        "checks": checks,
        "retrain_due": any(c["due"] for c in checks if c["enabled"]),
    }


def write_report(project: Project, report: dict[str, Any], html: Path | None = None) -> tuple[Path, Path]:
    """Write report.json into the monitor folder and the self-contained HTML page; returns both paths."""
    from cd4ml.monitor.html import render_page

    folder = project.monitor_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    tmp.replace(path)  # the service's /metrics reads this file: never let it see half of it
    html = html or folder / HTML_FILE
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_page(report), encoding="utf-8")
    return path, html


def print_report(report: dict[str, Any], console: Any) -> None:
    """The report for a terminal: per release, the latest drift window, the checks."""
    from rich.table import Table

    primary = report["primary_metric"]
    champion = report["champion"]
    console.print(f"[bold]{report['project']}[/]: model {report['model_name']}, champion "
                  f"{'v' + champion['version'] if champion else 'none'}; feedback: "
                  + ", ".join(f"{k} {v:,}" for k, v in report["feedback"].items()))
    traffic: dict[str, dict[str, float]] = {}
    for row in report["traffic"]:
        t = traffic.setdefault(row["model_version"], {"predictions": 0, "p99": 0.0})
        t["predictions"] += row["predictions"]
        t["p99"] = max(t["p99"], row["latency_p99_ms"])
    table = Table(title="Releases: offline (holdout) vs live (actuals)")
    for col in ("version", "gate", "champion", f"offline {primary}", f"live {primary}", "scored rows",
                "predictions", "worst day p99 ms"):
        table.add_column(col)
    for r in report["releases"]:
        live = r["live"]
        t = traffic.get(r["version"])
        offline = r["offline"].get(primary)
        table.add_row(r["version"], r["gate"] or "", "yes" if r["champion"] else "",
                      f"{offline:.4f}" if offline is not None else "",
                      f"{live['metrics'][primary]:.4f}" if live else "", f"{live['rows']:,}" if live else "",
                      f"{int(t['predictions']):,}" if t else "", f"{t['p99']:.1f}" if t else "")
    console.print(table)
    windows = report["drift"]["windows"]
    if windows:
        w = windows[-1]
        table = Table(title=f"Drift {w['start']}..{w['end']} ({w['rows']:,} rows) vs the reference of "
                            f"v{report['drift']['reference_version']}")
        for col in ("column", "PSI", "KS", "new values", "drifted"):
            table.add_column(col)
        rows = [(f["name"], f["psi"], f["ks"], ", ".join(f["new_values"][:5]), f["alarm"]) for f in w["features"]]
        rows += [(k, w[k]["psi"], w[k].get("ks"), "", w[k]["alarm"]) for k in ("prediction", "target") if w.get(k)]
        for name, psi, ks, new, alarm in rows:
            table.add_row(name, f"{psi:.3f}" if psi is not None else "", f"{ks:.3f}" if ks is not None else "",
                          new, "[red]yes[/]" if alarm else "")
        for s in w["segments"]:
            if s["alarm"]:
                table.add_row(f"{s['feature']} = {s['value']}", "", "", f"bias {s['bias']:+.2f} sd "
                              f"({s['rows']} rows)", "[red]yes[/]")
        console.print(table)
    for c in report["checks"]:
        mark = "[red]retrain[/]" if c["due"] and c["enabled"] else ("[dim]off[/]" if not c["enabled"] else "[green]ok[/]")
        console.print(f"  {c['name']:<9} {mark}  {c['detail']}")
    console.print("[bold red]Retraining is due.[/]" if report["retrain_due"] else "[green]No retraining due.[/]")
