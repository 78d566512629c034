"""Time-based holdout: the model is scored on the most recent period it never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd4ml.config import SplitConfig
from cd4ml.errors import Cd4mlError


def time_split(frame: pd.DataFrame, time_column: str, split: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): holdout is the last `holdout_days` days, or the last `holdout_rows` rows by time.

    Rows with the same time never straddle the split, so no day is half seen.
    """
    times = frame[time_column]
    if split.holdout_days is not None:
        cutoff = times.max().normalize() - pd.Timedelta(days=split.holdout_days - 1)
    else:
        ordered = np.sort(times.to_numpy())
        if split.holdout_rows >= len(ordered):
            raise Cd4mlError(f"split.holdout_rows={split.holdout_rows} leaves no training rows "
                             f"(the table has {len(ordered)})")
        cutoff = ordered[len(ordered) - split.holdout_rows]
    in_holdout = (times >= cutoff).to_numpy()
    if times.is_monotonic_increasing:  # as TrainingTable.read returns rows: training rows are not copied
        start = len(frame) - int(in_holdout.sum())
        # The holdout is copied: a slice would keep the whole table's memory alive for the rest of the run,
        # long after the training rows are turned into features and freed.
        train, holdout = frame.iloc[:start], frame.iloc[start:].copy()
    else:
        train, holdout = frame[~in_holdout], frame[in_holdout]
    if train.empty or holdout.empty:
        raise Cd4mlError(f"the time split at {cutoff} leaves {len(train)} training and {len(holdout)} "
                         "holdout rows; adjust 'split' in cd4ml.yaml")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)
