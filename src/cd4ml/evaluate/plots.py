"""Evaluation plots logged with every run (matplotlib, no display needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SAMPLE = 20000


def figure(width: float = 6.0, height: float = 5.0) -> "Figure":
    """A matplotlib figure drawn off-screen (Agg): no display, no global pyplot state."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def predicted_vs_actual(y: np.ndarray, p: np.ndarray, seed: int, title: str) -> "Figure":
    """Hexbin density of predictions against actuals on log1p axes (a seeded sample)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=min(_SAMPLE, len(y)), replace=False)
    ly, lp = np.log1p(np.clip(y[idx], 0, None)), np.log1p(np.clip(p[idx], 0, None))
    fig = figure()
    ax = fig.add_subplot()
    hb = ax.hexbin(ly, lp, gridsize=50, bins="log", mincnt=1, cmap="viridis")
    top = float(max(ly.max(), lp.max())) if len(idx) else 1.0
    ax.plot([0, top], [0, top], color="crimson", lw=1, label="perfect")
    ax.set_xlabel("actual, log1p")
    ax.set_ylabel("predicted, log1p")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.colorbar(hb, ax=ax, label="rows (log)")
    fig.tight_layout()
    return fig


def error_by_slice(column: str, metric: str, model: dict[str, float], baseline: dict[str, float]) -> "Figure":
    """Horizontal bars of the metric per slice value, model next to the naive baseline."""
    names = sorted(model, key=lambda k: model[k])
    fig = figure(7.0, max(3.0, 0.28 * len(names) + 1.2))
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    ax.barh(pos - 0.2, [baseline.get(n, np.nan) for n in names], height=0.4, label="naive baseline",
            color="#bbbbbb")
    ax.barh(pos + 0.2, [model[n] for n in names], height=0.4, label="model", color="#2a7ab9")
    ax.set_yticks(pos, names, fontsize=7)
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} by {column}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def png_tag(fig: "Figure") -> str:
    """The figure as an <img> with an inline PNG: HTML reports stay one self-contained file."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
