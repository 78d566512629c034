"""Evaluation plots logged with every run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
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


def save_run_plots(folder: Path, title: str, seed: int, y: np.ndarray, pred: np.ndarray, metric: str,
                   slices: dict[str, dict[str, dict[str, float]]],
                   base_slices: dict[str, dict[str, dict[str, float]]]) -> None:
    """A run's evaluation plots as PNG files in `folder`: predicted vs actual (y, pred: (n,) holdout
    values; not drawn for class probabilities, pred (n, k)), and `metric` per slice value of each slice
    column, model next to the naive baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    if pred.ndim == 1:
        predicted_vs_actual(y, pred, seed, title).savefig(folder / "predicted_vs_actual.png", dpi=100)
    for column, values in slices.items():
        model = {k: v[metric] for k, v in values.items()}
        base = {k: v[metric] for k, v in base_slices[column].items()}
        error_by_slice(column, metric, model, base).savefig(folder / f"{metric}_by_{column}.png", dpi=100)


class RunPlotsProcess:
    """`save_run_plots` in a child process, started at once; `wait` raises what it failed with.

    matplotlib's import and drawing hold an interpreter for seconds: in a thread of the run they
    slowed registering from 1.0 to 2.5-3 s at 1M rows. The child reads its inputs from files next
    to `folder` (not the main module, as multiprocessing's spawn would: scripts need no main guard).
    """

    def __init__(self, folder: Path, title: str, seed: int, y: np.ndarray, pred: np.ndarray, metric: str,
                 slices: dict[str, dict[str, dict[str, float]]],
                 base_slices: dict[str, dict[str, dict[str, float]]]) -> None:
        import json
        import subprocess
        import sys

        inputs = folder.with_name(f"{folder.name}-inputs")
        inputs.mkdir(parents=True, exist_ok=True)
        np.save(inputs / "y.npy", y)
        np.save(inputs / "pred.npy", pred)
        (inputs / "args.json").write_text(json.dumps({"folder": str(folder), "title": title, "seed": seed,
                                                      "metric": metric, "slices": slices,
                                                      "base_slices": base_slices}), encoding="utf-8")
        # -P: the working directory (a project's) must not shadow the modules the child imports.
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "cd4ml.evaluate.plots", str(inputs)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 600) -> None:
        import subprocess

        from cd4ml.errors import Cd4mlError

        try:
            _, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Cd4mlError(f"drawing the evaluation plots took more than {timeout:.0f} s") from None
        finally:
            self.stop()
        if self.proc.returncode != 0:
            raise Cd4mlError(f"drawing the evaluation plots failed (exit {self.proc.returncode}): "
                             f"{stderr.strip()[-2000:]}")

    def stop(self) -> None:
        """End the child if it still runs (the run failed before waiting for it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _main(inputs: Path) -> None:
    import json

    args = json.loads((inputs / "args.json").read_text(encoding="utf-8"))
    save_run_plots(Path(args["folder"]), args["title"], args["seed"], np.load(inputs / "y.npy"),
                   np.load(inputs / "pred.npy"), args["metric"], args["slices"], args["base_slices"])


def png_tag(fig: "Figure") -> str:
    """The figure as an <img> with an inline PNG: HTML reports stay one self-contained file."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


if __name__ == "__main__":
    import sys

    _main(Path(sys.argv[1]))
