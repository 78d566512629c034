"""Tests of the project's own features (run with pytest from the project root)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import payday_features  # noqa: E402


def test_paydays_are_the_15th_and_the_last_day_of_the_month():
    dates = np.array(["2024-02-14", "2024-02-15", "2024-02-16", "2024-02-29", "2024-03-01", "2023-12-31"],
                     dtype="datetime64[D]")
    out = payday_features({"date": dates})
    assert out["is_payday"].tolist() == [0, 1, 0, 1, 0, 1]
    assert out["after_payday"].tolist() == [0, 0, 1, 0, 1, 0]


def test_features_keep_the_batch_length():
    dates = np.arange("2024-01-01", "2024-03-01", dtype="datetime64[D]")
    out = payday_features({"date": dates})
    assert all(len(v) == len(dates) for v in out.values())
