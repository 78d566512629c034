"""The demo's self-contained HTML report: tables and plots (inline PNG), no external assets."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.demo.example import DemoExample, Scored
from cd4ml.evaluate.plots import figure, png_tag
from cd4ml.monitor.html import html_page
from cd4ml.verdicts import judged_window

_CSS = """table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #d5dde5;padding:.3em .7em;text-align:left}
th{background:#eef3f7} .kpi{display:flex;gap:2em} .kpi div{background:#eef3f7;padding:.6em 1em;border-radius:6px}"""


def _metrics_plot(releases: list[dict[str, Any]], metric: str, greater_is_better: bool) -> str:
    fig = figure(7, 3.2)
    ax = fig.add_subplot()
    labels = [f"v{r['version']}" for r in releases]
    values = [r["metrics"][metric] for r in releases]
    baseline = releases[0]["baseline"][metric]
    colors = ["#2a7ab9" if r["gate"]["passed"] else "#c0392b" for r in releases]
    ax.bar(labels, values, color=colors)
    ax.axhline(baseline, color="#888", ls="--", lw=1, label="naive baseline")
    ax.set_ylim(min(*values, baseline) * 0.95, max(*values, baseline) * 1.02)
    ax.set_ylabel(f"holdout {metric} ({'higher' if greater_is_better else 'lower'} is better)")
    ax.set_title("Metrics per release (red: rejected by the gate)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return png_tag(fig)


def _production_plots(scored: list[Scored], metric: str, period: str) -> str:
    """A regression's forecast vs actual (a sample of each batch), and the live metric per batch by version."""
    samples = [s.sample for s in scored if s.sample is not None]
    fig = figure(10 if samples else 6, 3.6)
    if samples:
        ax1 = fig.add_subplot(1, 2, 1)
        actual = np.log1p(np.concatenate([a for a, _ in samples]))
        forecast = np.log1p(np.concatenate([f for _, f in samples]))
        ax1.scatter(actual, forecast, s=4, alpha=0.35, color="#2a7ab9")
        top = float(max(actual.max(), forecast.max()))
        ax1.plot([0, top], [0, top], color="crimson", lw=1)
        ax1.set_xlabel("actual units, log1p")
        ax1.set_ylabel("forecast, log1p")
        ax1.set_title("Production: forecast vs actual")
    ax2 = fig.add_subplot(1, 2, 2) if samples else fig.add_subplot()
    palette = ["#2a7ab9", "#e67e22", "#27ae60", "#8e44ad", "#c0392b"]
    versions = list(dict.fromkeys(v for s in scored for v in s.versions))
    for i, version in enumerate(versions):
        mine = [(j, s.metrics[metric]) for j, s in enumerate(scored) if s.versions == (version,)]
        if mine:
            ax2.plot(*zip(*mine), marker="o", ms=3, ls="", color=palette[i % len(palette)], label=f"v{version}")
    starts = [j for j, s in enumerate(scored) if j == 0 or s.period != scored[j - 1].period]
    for j in starts[1:]:
        ax2.axvline(j - 0.5, color="#bbb", lw=0.8)
    # Named as the narration names them: "week 2", "month 3" (a date's month-day said "01-01" for every month).
    ax2.set_xticks(starts, [f"{period} {scored[j].period + 1}" for j in starts])
    ax2.set_ylabel(f"live {metric}")
    ax2.set_title(f"Live accuracy per {'day' if len(scored) > len(starts) else period}, by serving version")
    ax2.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return png_tag(fig)


def _monitor_rows(periods: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for w in periods:
        latest = judged_window(w)
        champion = next((r for r in w["releases"] if r["champion"]), None)
        acc = next((c["detail"] for c in w["checks"] if c["name"] == "accuracy"), "")
        drifted = ", ".join(latest["drifted"]) if latest and latest["alarm"] else "none"
        due = [c["name"] for c in w["checks"] if c["enabled"] and c["due"]]
        rows.append([w["period"], f"v{champion['version']}" if champion else "", drifted, acc,
                     f"retrain (exit 5): {', '.join(due)}" if due else "ok (exit 0)"])
    return rows


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: Path, example: DemoExample, greater_is_better: bool, releases: list[dict[str, Any]],
                 scored: list[Scored], periods: list[dict[str, Any]], tally: Any, logged: int, seconds: float) -> Path:
    """Write the report to `path` (folders created); returns the absolute path. `releases`: `cd4ml run --json`
    results; `periods`: the monitoring report of each production period."""
    # The task's primary metric and one more it reports: nwrmsle and rmse, auc and logloss.
    metric = example.metric
    second = next(m for m in (*example.shown_metrics[1:], "rmse") if m in releases[0]["metrics"])
    release_rows = [[r["step"].split(":")[0], r["version"], f"{r['metrics'][metric]:.4f}",
                     f"{r['metrics'][second]:.3f}", f"{r['baseline'][metric]:.4f}",
                     "passed" if r["gate"]["passed"] else "rejected: " + ", ".join(
                         c["name"] for c in r["gate"]["checks"] if not c["passed"]),
                     "yes" if r["promoted"] else ""] for r in releases]
    regression = any(s.sample is not None for s in scored)
    predicted, actual = ("forecast units", "actual units") if regression else ("expected positives", "positives")
    batch_rows = [[s.date, s.rows, s.fallback, ", ".join(s.versions),
                   *(f"{s.metrics[m]:.4f}" for m in example.shown_metrics),
                   f"{s.predicted_total:.0f}", f"{s.actual_total:.0f}"] for s in scored]
    body = f"""<h1>cd4ml demo: continuous delivery on the {html.escape(example.name)} example</h1>
<p>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} in {seconds:.0f} s.</p>
<div class="kpi"><div><b>{tally.ok}</b> requests served</div><div><b>{tally.failed}</b> failed</div>
<div><b>{tally.records}</b> predictions</div><div><b>{logged}</b> events in the prediction log</div></div>
<h2>Releases and gate verdicts</h2>
{_table(["scenario", "version", metric, second, f"baseline {metric}", "gate", "became champion"], release_rows)}
{_metrics_plot(releases, metric, greater_is_better)}
<h2>In the wild: monitoring and the feedback loop</h2>
<p>Every {example.period}: predictions over HTTP, actuals back (POST /feedback, or <code>cd4ml feedback FILE</code>),
<code>cd4ml monitor --check</code>; when it says retrain: <code>cd4ml data refresh</code> + <code>cd4ml run</code>,
and the gate decides.</p>
{_table([example.period, "champion", "drifted (latest window)", "live vs offline accuracy", "monitor --check"],
        _monitor_rows(periods))}
{_production_plots(scored, metric, example.period) if scored else ""}
{_table(["date", html.escape(example.batch_noun), "unknown categories", "served by",
         *(f"live {m}" for m in example.shown_metrics), predicted, actual], batch_rows)}"""
    doc = html_page("cd4ml demo report", body, width=1040, css=_CSS)
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
