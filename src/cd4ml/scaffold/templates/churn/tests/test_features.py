"""Tests of the project's own features (run with pytest from the project root)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import value_features  # noqa: E402


def test_hours_per_fee_is_usage_over_price():
    out = value_features({"usage_hours": np.array([10.0, 0.0, 30.0]), "price": np.array([9.99, 14.99, 24.99])})
    np.testing.assert_allclose(out["hours_per_fee"], [10 / 9.99, 0.0, 30 / 24.99])


def test_a_free_month_gives_a_finite_ratio():
    out = value_features({"usage_hours": np.array([5.0]), "price": np.array([0.0])})
    assert np.isfinite(out["hours_per_fee"]).all()


def test_features_keep_the_batch_length():
    n = 1000
    out = value_features({"usage_hours": np.linspace(0, 50, n), "price": np.full(n, 14.99)})
    assert all(len(v) == n for v in out.values())
