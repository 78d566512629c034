"""History features benchmark: building them is linear in rows, and how it compares with pandas.

    .venv/bin/python benchmarks/history.py [--sizes 0.1,1,5] [--out benchmarks/results]

For each size (millions of rows) a daily panel of 500 days (rows / 500 series, a few days missing per
series) is built in memory; then, in 5 rounds that each time every size once (the machine's speed
drifts within minutes: the linearity target takes the median of the rounds' own ratios):

- cd4ml: `SeriesHistory(spec, rows)` (the index) and `.features(rows)` for every row: the grocery
  example's history settings (lags 1, 7, 14, 28; mean and std of 7 days; mean of 28 days a week back);
- pandas, the baseline in the same process: each series reindexed to its daily grid, `shift` for the
  lags and `rolling` windows shifted by the gap (`groupby(...).shift`, `groupby(...).rolling`), the
  values mapped back to the rows; its results are checked against cd4ml's (they must agree to 1e-9).

Writes history.json and history.md to --out with the target: seconds per row at 5M rows <= 1.25x
the seconds per row at 1M (linear; the median of the rounds' ratios), and the ratio to pandas at each
size (medians; pandas is timed in the first 3 rounds).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from cd4ml.features.transforms import HistorySpec, SeriesHistory, Window  # noqa: E402

DAYS = 500
SPEC = HistorySpec(series=("store_nbr", "item_nbr"), time="date", target="unit_sales", count=1, unit="D", horizon=1,
                   lags=(1, 7, 14, 28), windows=(Window(7, ("mean", "std"), 1), Window(28, ("mean",), 7)))
LINEAR_LIMIT = 1.25
ROUNDS, PANDAS_ROUNDS = 5, 3


def panel(rows_m: float, seed: int = 0) -> dict[str, np.ndarray]:
    """A daily panel of about `rows_m` million rows: (store, item) series of DAYS days, 2% of days missing."""
    rng = np.random.default_rng(seed)
    series = max(1, int(rows_m * 1e6 / DAYS))
    stores = 50
    store = np.repeat(np.arange(series) % stores + 1, DAYS)
    item = np.repeat(100_000 + np.arange(series) // stores, DAYS)
    date = np.tile(np.datetime64("2016-01-01") + np.arange(DAYS), series)
    keep = rng.random(len(date)) >= 0.02
    sales = rng.gamma(2.0, 3.0, len(date)).round(2)
    return {"store_nbr": store[keep], "item_nbr": item[keep], "date": date[keep], "unit_sales": sales[keep]}


def cd4ml_features(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return SeriesHistory(SPEC, rows).features(rows)


def pandas_features(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same features with pandas: every series on every day (NaN where missing), shifted and rolled per
    series, then read back at the rows."""
    frame = pd.DataFrame(rows)
    keys = list(SPEC.series)
    dates = pd.DataFrame({"date": pd.date_range(frame["date"].min(), frame["date"].max(), freq="D")})
    grid = frame.set_index([*keys, "date"])["unit_sales"].reindex(
        pd.MultiIndex.from_frame(frame[keys].drop_duplicates().merge(dates, how="cross")))
    by_series = grid.groupby(level=keys, sort=False)
    out = {f"unit_sales_lag{lag}": by_series.shift(lag) for lag in SPEC.lags}
    for w in SPEC.windows:
        shifted = by_series.shift(w.gap).groupby(level=keys, sort=False)
        suffix = "" if w.gap == SPEC.horizon else f"_gap{w.gap}"
        for stat in w.stats:
            rolling = shifted.rolling(w.size, min_periods=2 if stat == "std" else 1)
            out[f"unit_sales_{stat}{w.size}{suffix}"] = getattr(rolling, stat)().droplevel(list(range(len(keys))))
    at = pd.MultiIndex.from_arrays([rows[k] for k in keys] + [rows["date"]], names=[*keys, "date"])
    return {name: values.reindex(at).to_numpy() for name, values in out.items()}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1,1,5")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    sizes = sorted(float(x) for x in args.sizes.split(","))
    panels = {size: panel(size) for size in sizes}
    mine: dict[float, list[float]] = {size: [] for size in sizes}
    theirs: dict[float, list[float]] = {size: [] for size in sizes}
    for round_ in range(ROUNDS):
        for size, rows in panels.items():
            seconds, features = timed(lambda: cd4ml_features(rows))
            mine[size].append(seconds)
            if round_ < PANDAS_ROUNDS:
                seconds, reference = timed(lambda: pandas_features(rows))
                theirs[size].append(seconds)
                for name in SPEC.names:
                    np.testing.assert_allclose(features[name], reference[name], rtol=1e-9, atol=1e-9, err_msg=name)
        print(f"round {round_ + 1}: " + ", ".join(f"{s:g}M {mine[s][-1]:.3f} s" for s in sizes), flush=True)
    results = []
    for size in sizes:
        n, mine_s, theirs_s = len(panels[size]["date"]), statistics.median(mine[size]), statistics.median(theirs[size])
        results.append({"size_m": size, "rows": n, "cd4ml_s": round(mine_s, 3), "pandas_s": round(theirs_s, 3),
                        "cd4ml_us_per_row": round(mine_s / n * 1e6, 4), "pandas_over_cd4ml": round(theirs_s / mine_s, 2),
                        "cd4ml_rounds_s": [round(x, 3) for x in mine[size]]})
    growth = None
    if {1.0, 5.0} <= set(sizes):
        rows_1, rows_5 = len(panels[1.0]["date"]), len(panels[5.0]["date"])
        growth = round(statistics.median((b / rows_5) / (a / rows_1) for a, b in zip(mine[1.0], mine[5.0])), 3)
    doc = {"machine": {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
                       "cpus": __import__("os").cpu_count()},
           "spec": SPEC.to_json(), "results": results,
           "target": {"name": "per-row time at 5M <= 1.25x per-row time at 1M (linear)", "value": growth,
                      "met": None if growth is None else growth <= LINEAR_LIMIT}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "history.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    lines = ["# History features: building them (benchmarks/history.py)", "",
             f"Lags {list(SPEC.lags)}, windows " + ", ".join(f"{w.size} days ({', '.join(w.stats)}) from {w.gap} back"
                                                             for w in SPEC.windows)
             + f"; a daily panel of {DAYS} days per series, 2% of days missing. Medians of {ROUNDS} interleaved "
             f"rounds (pandas: {PANDAS_ROUNDS}).", "",
             "| rows | cd4ml (index + features) | µs per row | pandas (reindex, shift, rolling) | pandas / cd4ml |",
             "|--:|--:|--:|--:|--:|"]
    lines += [f"| {r['rows']:,} | {r['cd4ml_s']:.3f} s | {r['cd4ml_us_per_row']:.3f} | {r['pandas_s']:.3f} s | "
              f"{r['pandas_over_cd4ml']:.1f}x |" for r in results]
    if growth is not None:
        lines += ["", f"Target: per-row time at 5M rows / at 1M (median of the rounds' ratios) = **{growth}** "
                      f"(<= {LINEAR_LIMIT}: "
                      f"{'met' if growth <= LINEAR_LIMIT else 'missed'})."]
    (args.out / "history.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
