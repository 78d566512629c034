"""Time-based holdout: the model is scored on the most recent period it never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd4ml.config import SplitConfig
from cd4ml.errors import ConfigError


def time_split(frame: pd.DataFrame, time_column: str, split: SplitConfig,
               file: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): holdout is the last `holdout_days` days, the last `holdout_periods` distinct
    times, or the last `holdout_rows` rows by time.

    Rows with the same time never straddle the split, so no day (or year) is half seen. A holdout
    that leaves no training rows (or none to score) is the project file's error, named by its key.
    """
    times = frame[time_column]
    key, cutoff = _cutoff(times, split)
    in_holdout = (times >= cutoff).to_numpy()
    n_holdout = int(in_holdout.sum())
    if n_holdout == 0 or n_holdout == len(frame):
        span = f"{times.min()} to {times.max()}, {times.nunique():,} distinct times" if len(frame) else "no rows"
        setting = f"{key.removeprefix('split.')}={getattr(split, key.removeprefix('split.'))}"
        raise ConfigError(f"{setting} puts {n_holdout:,} of the table's "
                          f"{len(frame):,} rows in the holdout and leaves {len(frame) - n_holdout:,} for training "
                          f"(the data: {span}); both need rows: choose a shorter holdout", file=file, key=key)
    if times.is_monotonic_increasing:  # as TrainingTable.read returns rows: training rows are not copied
        start = len(frame) - n_holdout
        # The holdout is copied: a slice would keep the whole table's memory alive for the rest of the run,
        # long after the training rows are turned into features and freed.
        train, holdout = frame.iloc[:start], frame.iloc[start:].copy()
    else:
        train, holdout = frame[~in_holdout], frame[in_holdout]
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def _cutoff(times: pd.Series, split: SplitConfig) -> tuple[str, object]:
    """The split's key and the first time in the holdout."""
    if split.holdout_days is not None:
        return "split.holdout_days", times.max().normalize() - pd.Timedelta(days=split.holdout_days - 1)
    if split.holdout_periods is not None:
        distinct = np.unique(times.to_numpy())
        # More periods than the data has: the first one, so every row is in the holdout (and refused).
        return "split.holdout_periods", distinct[max(len(distinct) - split.holdout_periods, 0)]
    ordered = np.sort(times.to_numpy())
    return "split.holdout_rows", ordered[max(len(ordered) - split.holdout_rows, 0)]
