"""The monitoring report as one self-contained HTML file (what `cd4ml monitor` writes).

The terminal report (Rich, exported with its colours) and three plots as inline PNGs:
live vs offline accuracy per day, drift per column in the latest window, and the
champion's predictions against its reference; for a classifier, per release its confusion
matrices and calibration curves, live next to offline. No external assets: the file can be
mailed or archived by CI. The interactive view of the same report is `cd4ml ui`.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING

import numpy as np

from cd4ml.evaluate.plots import figure, png_tag

if TYPE_CHECKING:
    from cd4ml.monitor.document import MonitoringReport, ReleaseRow

_PALETTE = ["#2a7ab9", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085"]


def _accuracy_plot(report: MonitoringReport) -> str:
    primary = report.primary_metric
    rows = report.accuracy
    if not rows:
        return "<p>No actuals yet: live accuracy appears once actuals arrive.</p>"
    fig = figure(9, 3.4)
    ax = fig.add_subplot()
    days = sorted({r.day for r in rows})
    at = {d: i for i, d in enumerate(days)}
    offline = {r.version: r.offline.get(primary) for r in report.releases}
    for i, version in enumerate(sorted({r.model_version for r in rows}, key=int)):
        mine = [r for r in rows if r.model_version == version]
        color = _PALETTE[i % len(_PALETTE)]
        ax.plot([at[r.day] for r in mine], [r.metrics[primary] for r in mine], "o", ms=4, color=color,
                label=f"v{version} live")
        if offline.get(version) is not None:
            ax.axhline(offline[version], color=color, ls="--", lw=1, label=f"v{version} offline")
    step = max(1, len(days) // 10)
    ax.set_xticks(range(0, len(days), step), [d.isoformat()[5:] for d in days[::step]])
    ax.set_ylabel(primary)
    ax.set_title(f"Live {primary} per day (points) vs offline holdout (dashed)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return png_tag(fig)


def _drift_plot(report: MonitoringReport) -> str:
    judged = report.drift.judged_window
    if judged is None:
        return "<p>No drift windows yet.</p>"
    w = judged.drift
    entries = [(f.name, f.psi or 0.0, f.alarm) for f in w.features]
    entries += [(k, o.psi, o.alarm) for k, o in (("prediction", w.prediction), ("target", w.target)) if o]
    entries += [(f"probability of {c.name}", c.psi or 0.0, c.alarm) for c in w.probabilities or []]
    fig = figure(7, 0.32 * len(entries) + 1.4)
    ax = fig.add_subplot()
    pos = np.arange(len(entries))
    ax.barh(pos, [e[1] for e in entries], color=["#c0392b" if e[2] else "#2a7ab9" for e in entries])
    ax.set_yticks(pos, [e[0] for e in entries], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("population stability index (red: drifted)")
    ax.set_title(f"Drift {judged.window.start}..{judged.window.end} vs the reference of "
                 f"v{report.drift.reference_version}")
    fig.tight_layout()
    return png_tag(fig)


def _prediction_plot(report: MonitoringReport) -> str:
    hist = report.prediction_histogram
    if not hist:
        return ""
    fig = figure(7, 3.0)
    ax = fig.add_subplot()
    pos = np.arange(len(hist.reference))
    ax.bar(pos - 0.2, hist.reference, width=0.4, color="#bbbbbb", label="reference (holdout)")
    ax.bar(pos + 0.2, hist.live, width=0.4, color="#2a7ab9", label="live")
    edges = hist.edges
    ax.set_xticks(pos, [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in pos], rotation=30, fontsize=7)
    ax.set_ylabel("share of predictions")
    ax.set_title(f"Predictions of v{hist.version}: live vs reference")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_tag(fig)


def _outcomes_plot(release: ReleaseRow) -> str:
    """A classifier release's confusion matrices (live, offline) and calibration curves (both, and the diagonal)."""
    doc = release.outcomes
    panels = [(name, o) for name, o in (("live", doc.live), ("offline", doc.offline)) if o] if doc else []
    if not panels:
        return ""
    fig = figure(4.0 * (len(panels) + 1), 3.6)
    axes = fig.subplots(1, len(panels) + 1)
    for ax, (name, o) in zip(axes, panels):
        matrix = np.asarray(o.confusion, dtype=float)
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, f"{int(n):,}", ha="center", va="center", fontsize=8,
                    color="white" if n > matrix.max() / 2 else "black")
        ticks = range(len(o.classes))
        ax.set_xticks(ticks, o.classes, fontsize=8)
        ax.set_yticks(ticks, o.classes, fontsize=8)
        ax.set_xlabel("answered")
        ax.set_ylabel("actual")
        ax.set_title(f"v{release.version} {name}", fontsize=9)
    ax = axes[-1]
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1)
    for (name, o), style in zip(panels, ("o-", "s--")):
        points = [(x, y) for x, y in zip(o.predicted, o.observed) if x is not None]
        ax.plot([x for x, _ in points], [y for _, y in points], style, ms=4, label=name)
    ax.set_xlabel(f"predicted probability of {panels[0][1].calibration_of}")
    ax.set_ylabel("observed frequency")
    ax.set_title("calibration (10 bins)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_tag(fig)


def _outcomes_section(report: MonitoringReport) -> str:
    plots = "".join(_outcomes_plot(r) for r in report.releases if r.outcomes)
    return f"<h2>Confusion and calibration, live vs offline</h2>{plots}" if plots else ""


def _not_judged(report: MonitoringReport) -> str:
    names = report.not_judged
    if not names:
        return ""
    return (' <b class="not-judged" style="color:#a16207">Not judged (too little evidence): '
            f"{html.escape(', '.join(names))}</b>.")


def render_page(report: MonitoringReport) -> str:
    """The report as an HTML document (str)."""
    from rich.console import Console

    from cd4ml.monitor.report import print_report

    console = Console(record=True, width=130, file=io.StringIO(), color_system="truecolor")
    print_report(report, console)
    terminal = console.export_html(inline_styles=True, code_format="<pre class=\"terminal\">{code}</pre>")
    title = f"cd4ml monitor: {report.project} ({report.generated_at.isoformat()[:16]} UTC)"
    return html_page(title, f"""<h1>{html.escape(title)}</h1>
<p><b>{'Retraining is due' if report.retrain_due else 'No retraining due'}</b>.{_not_judged(report)}
Feedback: {', '.join(f'{k} {v:,}' for k, v in report.feedback.items())}.</p>
{terminal}
<h2>Live accuracy</h2>{_accuracy_plot(report)}
<h2>Drift</h2>{_drift_plot(report)}
<h2>Predictions</h2>{_prediction_plot(report)}
{_outcomes_section(report)}""", width=1100,
                     css=".terminal{font-size:12px;background:#fafbfc;padding:1em;overflow-x:auto}")


def html_page(title: str, body: str, *, width: int, css: str = "") -> str:
    """A self-contained HTML document in the reports' one look: `title` as text, `body` and `css` as markup."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>\n'
            f"body{{font:15px/1.5 system-ui,sans-serif;max-width:{width}px;margin:2em auto;padding:0 1em;"
            f"color:#1d2733}}\nh1{{color:#0f3b57}} img{{max-width:100%}}\n{css}\n</style></head><body>\n"
            f"{body}\n</body></html>")
