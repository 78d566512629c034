"""The demo's self-contained HTML report: tables and plots (inline PNG), no external assets."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.evaluate.plots import figure, png_tag
from cd4ml.monitor.html import html_page
from cd4ml.verdicts import judged_window

_CSS = """table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #d5dde5;padding:.3em .7em;text-align:left}
th{background:#eef3f7} .kpi{display:flex;gap:2em} .kpi div{background:#eef3f7;padding:.6em 1em;border-radius:6px}"""


def _metrics_plot(releases: list[dict[str, Any]]) -> str:
    fig = figure(7, 3.2)
    ax = fig.add_subplot()
    labels = [f"v{r['version']}" for r in releases]
    values = [r["metrics"]["nwrmsle"] for r in releases]
    colors = ["#2a7ab9" if r["gate"]["passed"] else "#c0392b" for r in releases]
    ax.bar(labels, values, color=colors)
    ax.axhline(releases[0]["baseline"]["nwrmsle"], color="#888", ls="--", lw=1, label="naive baseline")
    ax.set_ylim(min(values) * 0.95, max(max(values), releases[0]["baseline"]["nwrmsle"]) * 1.02)
    ax.set_ylabel("holdout nwrmsle (lower is better)")
    ax.set_title("Metrics per release (red: rejected by the gate)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return png_tag(fig)


def _production_plots(days: list[dict[str, Any]], weeks: list[dict[str, Any]]) -> str:
    fig = figure(10, 3.6)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    actual = np.concatenate([d["sample"]["actual"] for d in days])
    forecast = np.concatenate([d["sample"]["forecast"] for d in days])
    ax1.scatter(np.log1p(actual), np.log1p(forecast), s=4, alpha=0.35, color="#2a7ab9")
    top = float(max(np.log1p(actual).max(), np.log1p(forecast).max()))
    ax1.plot([0, top], [0, top], color="crimson", lw=1)
    ax1.set_xlabel("actual units, log1p")
    ax1.set_ylabel("forecast, log1p")
    ax1.set_title("Production: forecast vs actual")
    palette = ["#2a7ab9", "#e67e22", "#27ae60", "#8e44ad", "#c0392b"]
    versions = list(dict.fromkeys(v for d in days for v in d["versions"]))
    for i, version in enumerate(versions):
        mine = [(j, d["nwrmsle"]) for j, d in enumerate(days) if d["versions"] == [version]]
        ax2.plot(*zip(*mine), marker="o", ms=3, ls="", color=palette[i % len(palette)], label=f"v{version}")
    for w in weeks[1:]:
        ax2.axvline(7 * (w["week"] - 1) - 0.5, color="#bbb", lw=0.8)
    ax2.set_xticks(range(0, len(days), 7), [days[j]["date"][5:] for j in range(0, len(days), 7)])
    ax2.set_ylabel("live nwrmsle")
    ax2.set_title("Live accuracy per day, by serving version")
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return png_tag(fig)


def _monitor_rows(weeks: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for w in weeks:
        latest = judged_window(w)
        champion = next((r for r in w["releases"] if r["champion"]), None)
        acc = next((c["detail"] for c in w["checks"] if c["name"] == "accuracy"), "")
        drifted = ", ".join(latest["drifted"]) if latest and latest["alarm"] else "none"
        due = [c["name"] for c in w["checks"] if c["enabled"] and c["due"]]
        rows.append([w["week"], f"v{champion['version']}" if champion else "", drifted, acc,
                     f"retrain (exit 5): {', '.join(due)}" if due else "ok (exit 0)"])
    return rows


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: Path, releases: list[dict[str, Any]], days: list[dict[str, Any]], weeks: list[dict[str, Any]],
                 tally: Any, logged: int, seconds: float) -> Path:
    """Write the report to `path` (folders created); returns the absolute path."""
    release_rows = [[r["step"].split(":")[0], r["version"], f"{r['metrics']['nwrmsle']:.4f}",
                     f"{r['metrics']['rmse']:.3f}", f"{r['baseline']['nwrmsle']:.4f}",
                     "passed" if r["gate"]["passed"] else "rejected: " + ", ".join(
                         c["name"] for c in r["gate"]["checks"] if not c["passed"]),
                     "yes" if r["promoted"] else ""] for r in releases]
    day_rows = [[d["date"], d["forecasts"], d["fallback"], ", ".join(d["versions"]), f"{d['nwrmsle']:.4f}",
                 f"{d['forecast_total']:.0f}", f"{d['actual_total']:.0f}"] for d in days]
    body = f"""<h1>cd4ml demo: continuous delivery on the grocery world</h1>
<p>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} in {seconds:.0f} s.</p>
<div class="kpi"><div><b>{tally.ok}</b> requests served</div><div><b>{tally.failed}</b> failed</div>
<div><b>{tally.records}</b> predictions</div><div><b>{logged}</b> events in the prediction log</div></div>
<h2>Releases and gate verdicts</h2>
{_table(["scenario", "version", "nwrmsle", "rmse", "baseline nwrmsle", "gate", "became champion"], release_rows)}
{_metrics_plot(releases)}
<h2>In the wild: monitoring and the feedback loop</h2>
<p>Every week: forecasts over HTTP, actuals back (POST /feedback, or <code>cd4ml feedback FILE</code>),
<code>cd4ml monitor --check</code>; when it says retrain: <code>cd4ml data refresh</code> + <code>cd4ml run</code>,
and the gate decides.</p>
{_table(["week", "champion", "drifted (latest window)", "live vs offline accuracy", "monitor --check"],
        _monitor_rows(weeks))}
{_production_plots(days, weeks) if days else ""}
{_table(["day", "forecasts", "unknown store/item", "served by", "live nwrmsle", "forecast units", "actual units"],
        day_rows)}"""
    doc = html_page("cd4ml demo report", body, width=1040, css=_CSS)
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
