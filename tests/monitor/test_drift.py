"""Drift detection on the grocery world: a stale model, perfect before a regime change, is
watched week by week; plus PSI/KS by hand, JSON round trips and missing inputs."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pandas as pd
import pytest

from cd4ml.examples.groceries.world import GroceryWorld, RegimeChange
from cd4ml.monitor.drift import ColumnDrift, Profile, WindowDrift, build_profile, compare

COLUMNS = ["store_nbr", "item_nbr", "family", "item_class", "perishable", "city", "state", "store_type",
           "cluster", "onpromotion"]
KINDS = {name: "numeric" if name == "item_class" else "categorical" for name in COLUMNS}
SEGMENTS = [["family", "onpromotion"], ["store_nbr", "family"]]
THRESHOLDS = {"psi_alarm": 0.25, "ks_alarm": 0.1, "bias_alarm": 0.25, "min_rows": 200}
REFERENCE = ("2024-12-04", "2024-12-31")  # 28 days before production starts
WEEKS = [("2025-01-01", "2025-01-07"), ("2025-01-08", "2025-01-14"), ("2025-01-15", "2025-01-21"),
         ("2025-01-22", "2025-01-28")]
KEY = ["date", "store_nbr", "item_nbr"]


def _world(n_stores: int = 10, *changes: RegimeChange) -> GroceryWorld:
    return GroceryWorld(n_stores=n_stores, n_items=100, seed=42, regime_changes=changes)


def _rows(world: GroceryWorld, n_stores: int, start: str, end: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Columns, prediction, target and log residual of ``world``'s rows, as scored by a model
    that predicts the unchanged world's expected sales (and, for a store it never saw, the
    item's mean over the other stores)."""
    sales = world.sales(start, end)
    unchanged = _world(n_stores).sales(start, end)
    rows = sales.merge(unchanged[[*KEY, "expected_sales"]].rename(columns={"expected_sales": "prediction"}),
                       on=KEY, how="left")
    fallback = unchanged.groupby("item_nbr")["expected_sales"].mean()
    prediction = rows["prediction"].fillna(rows["item_nbr"].map(fallback)).to_numpy()
    target = rows["unit_sales"].to_numpy()
    residual = np.log1p(target) - np.log1p(prediction)
    return {name: rows[name].to_numpy() for name in COLUMNS}, prediction, target, residual


@cache
def _profile(n_stores: int = 10) -> Profile:
    columns, prediction, target, residual = _rows(_world(n_stores), n_stores, *REFERENCE)
    profile = build_profile(columns, KINDS, prediction, target, residual, SEGMENTS)
    return Profile.from_json(json.loads(json.dumps(profile.to_json())))  # as stored with the model


def _window(week: tuple[str, str], *changes: RegimeChange, n_stores: int = 10) -> WindowDrift:
    return compare(_profile(n_stores), *_rows(_world(n_stores, *changes), n_stores, *week), **THRESHOLDS)


def _feature(window: WindowDrift, name: str) -> ColumnDrift:
    return next(f for f in window.features if f.name == name)


def _summary(window: WindowDrift) -> str:
    worst = max(window.features, key=lambda f: f.psi)
    segment = max(window.segments, key=lambda s: abs(s.bias), default=None)
    return (f"rows={window.rows} drifted={window.drifted} max PSI {worst.name}={worst.psi:.4f} "
            f"prediction PSI={window.prediction.psi:.4f} KS={window.prediction.ks:.4f} "
            f"target PSI={window.target.psi:.4f} KS={window.target.ks:.4f} max |bias| "
            f"{segment and (segment.feature, segment.value, round(segment.bias, 3))}")


# ---- the grocery world ------------------------------------------------------------------------

def test_unchanged_world_raises_no_alarm_for_four_weeks() -> None:
    for week in WEEKS:
        window = _window(week)
        print(week[0], _summary(window))
        assert not window.alarm and window.drifted == []
        # Far from the thresholds, so a real change stands out: measured max PSI 0.0007,
        # KS 0.021 (target), |bias| 0.20 (family DELI, 210 rows).
        assert max(f.psi for f in window.features) < THRESHOLDS["psi_alarm"] / 10
        assert max(window.prediction.psi, window.target.psi) < THRESHOLDS["psi_alarm"] / 10
        assert max(window.prediction.ks, window.target.ks) < THRESHOLDS["ks_alarm"] / 2
        assert all(abs(s.bias) < THRESHOLDS["bias_alarm"] for s in window.segments)


def test_new_store_alarms_on_store_nbr_from_its_first_week() -> None:
    opens = RegimeChange("new_store", "2025-01-08", {"store_nbr": 11, "city": "Quito", "state": "Pichincha",
                                                     "type": "A", "cluster": 3, "size": 1.6})
    before, after = _window(WEEKS[0], opens), _window(WEEKS[1], opens)
    print(_summary(before), "\n", _summary(after))
    assert not before.alarm
    assert after.alarm and after.rows == 7700
    store = _feature(after, "store_nbr")
    assert store.alarm and store.new_values == ["11"] and store.psi > 0.5  # measured 0.627
    assert "store_nbr" in after.drifted
    # Its cluster is new too; the stale model's fallback underpredicts the big store.
    assert _feature(after, "cluster").new_values == ["3"]
    segment = next(s for s in after.segments if s.feature == "store_nbr" and s.value == "11")
    assert segment.alarm and segment.bias > 0  # measured 0.48


def test_family_shift_alarms_on_the_family_segment_not_on_inputs() -> None:
    shift = RegimeChange("family_shift", "2025-01-01", {"families": ["BEVERAGES", "CLEANING"], "factor": 1.5})
    window = _window(WEEKS[0], shift)
    print(_summary(window))
    assert window.alarm and "family" in window.drifted
    assert not any(f.alarm for f in window.features)
    assert not window.prediction.alarm  # the stale model predicts as before
    alarming = {s.value: s.bias for s in window.segments if s.feature == "family" and s.alarm}
    assert set(alarming) == {"BEVERAGES", "CLEANING"}
    assert all(0.4 < bias < 0.7 for bias in alarming.values())  # measured 0.48, 0.49; ln 1.5 / 0.6 = 0.68


def test_promo_lift_alarms_on_the_family_by_promotion_segment() -> None:
    # 54 stores (Favorita's count): with 10, a family's promoted rows are at most ~45 a week,
    # far below min_rows, so no family x promotion segment could be judged.
    lift = RegimeChange("promo_lift", "2025-01-01", {"families": ["BEVERAGES", "GROCERY I"], "factor": 3})
    unchanged, window = _window(WEEKS[0], n_stores=54), _window(WEEKS[0], lift, n_stores=54)
    print(_summary(unchanged), "\n", _summary(window))
    assert not unchanged.alarm
    assert window.alarm and window.drifted == ["family×onpromotion"]
    alarming = {s.value: s.bias for s in window.segments if s.alarm}
    assert set(alarming) == {"BEVERAGES|1", "GROCERY I|1"}  # measured 0.57, 0.87
    assert all(bias > 0.4 for bias in alarming.values())


# ---- PSI, KS and the profile by hand ----------------------------------------------------------

def _profile_of(columns: dict, kinds: dict, **kwargs) -> Profile:
    n = len(next(iter(columns.values())))
    ones = np.ones(n)
    return build_profile(columns, kinds, ones, ones, np.zeros(n), **kwargs)


LOOSE = {"psi_alarm": 0.25, "ks_alarm": 0.1, "bias_alarm": 0.25, "min_rows": 1}


def test_identical_distributions_have_zero_psi_and_ks() -> None:
    rng = np.random.default_rng(1)
    columns = {"x": rng.normal(size=3000), "c": rng.choice(["a", "b", "c"], size=3000)}
    profile = _profile_of(columns, {"x": "numeric", "c": "categorical"}, sample_size=3000)
    window = compare(profile, columns, None, None, None, **LOOSE)
    for feature in window.features:
        assert feature.psi == pytest.approx(0.0, abs=1e-12) and not feature.alarm
    assert _feature(window, "x").ks == 0.0 and _feature(window, "c").ks is None


def test_psi_matches_hand_computation() -> None:
    profile = _profile_of({"c": np.array(["a", "b"] * 50), "x": np.arange(100.0)},
                          {"c": "categorical", "x": "numeric"}, bins=4)
    window = compare(profile, {"c": np.array(["a"] * 50 + ["b"] * 25 + ["z"] * 25), "x": np.arange(20.0).repeat(5)},
                     None, None, None, **LOOSE)
    eps = 1e-4
    # a stays at 0.5; b falls from 0.5 to 0.25; z is new (reference bin empty -> eps).
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - eps) * math.log(0.25 / eps)
    assert _feature(window, "c").psi == pytest.approx(expected)
    assert _feature(window, "c").new_values == ["z"]
    # Quartile bins of 0..99; every window value falls in the first one.
    expected = (1 - 0.25) * math.log(1 / 0.25) + 3 * (eps - 0.25) * math.log(eps / 0.25)
    assert _feature(window, "x").psi == pytest.approx(expected)


def test_ks_detects_a_shifted_normal() -> None:
    rng = np.random.default_rng(2)
    profile = _profile_of({"x": rng.normal(size=20_000)}, {"x": "numeric"})
    same = compare(profile, {"x": rng.normal(size=2000)}, None, None, None, **LOOSE).features[0]
    shifted = compare(profile, {"x": rng.normal(0.5, 1.0, size=2000)}, None, None, None, **LOOSE).features[0]
    assert same.ks < 0.05 and same.ks_pvalue > 0.01 and not same.alarm
    # Largest gap of the two CDFs: 2 * Phi(0.25) - 1 = 0.197.
    assert shifted.ks == pytest.approx(0.197, abs=0.03) and shifted.ks_pvalue < 1e-10 and shifted.alarm


def test_values_compare_by_text_and_missing_values_have_a_bin() -> None:
    profile = _profile_of({"store": np.array([11, 12] * 50), "x": np.arange(100.0)},
                          {"store": "categorical", "x": "numeric"})
    window = compare(profile, {"store": np.array(["11", 12.0, None, "12"] * 25, dtype=object),
                               "x": np.where(np.arange(100) % 2, np.nan, np.arange(100.0))},
                     None, None, None, **LOOSE)
    assert _feature(window, "store").new_values == ["<missing>"]
    assert _feature(window, "x").psi > 1  # half the values went missing
    assert _feature(window, "x").ks < 0.1  # the rest are spread as before


def test_profile_is_json_and_deterministic() -> None:
    columns, prediction, target, residual = _rows(_world(), 10, "2024-12-25", "2024-12-31")
    profile = build_profile(columns, KINDS, prediction, target, residual, SEGMENTS, sample_size=1000)
    assert profile == build_profile(columns, KINDS, prediction, target, residual, SEGMENTS, sample_size=1000)
    stored = json.dumps(profile.to_json(), allow_nan=False)
    loaded = Profile.from_json(json.loads(stored))
    assert loaded == profile and json.dumps(loaded.to_json(), allow_nan=False) == stored
    window = _rows(_world(), 10, *WEEKS[0])
    result = compare(loaded, *window, **THRESHOLDS)
    assert result == compare(profile, *window, **THRESHOLDS)
    document = result.to_json()
    json.dumps(document, allow_nan=False)
    assert set(document) == {"rows", "alarm", "drifted", "features", "prediction", "target", "segments"}
    assert set(document["features"][0]) == {"name", "kind", "psi", "ks", "ks_pvalue", "new_values", "alarm"}
    assert [f.name for f in result.features] == COLUMNS
    assert {s.feature for s in loaded.segments} == {
        "store_nbr", "item_nbr", "family", "perishable", "city", "state", "store_type", "cluster", "onpromotion",
        "family×onpromotion", "store_nbr×family"}
    assert all(len(s.values) <= 50 for s in loaded.segments)


def test_missing_predictions_and_actuals_give_null_entries() -> None:
    window = _rows(_world(), 10, *WEEKS[0])[0]
    result = compare(_profile(), window, None, None, None, **THRESHOLDS)
    assert result.prediction is None and result.target is None and result.segments == []
    assert result.rows == 7000 and not result.alarm and len(result.features) == len(COLUMNS)


def test_small_windows_are_not_judged() -> None:
    columns, prediction, target, residual = _rows(_world(), 10, "2025-01-01", "2025-01-01")
    few = {name: values[:100] for name, values in columns.items()}
    few["store_nbr"] = np.full(100, 99)  # a new store: PSI ~9 but only 100 rows
    result = compare(_profile(), few, prediction[:100], target[:100], residual[:100], **THRESHOLDS)
    assert _feature(result, "store_nbr").psi > 5 and not result.alarm and result.segments == []


def test_window_must_hold_the_profile_columns() -> None:
    columns = _rows(_world(), 10, "2025-01-01", "2025-01-01")[0]
    del columns["family"]
    with pytest.raises(ValueError, match="family"):
        compare(_profile(), columns, None, None, None, **THRESHOLDS)


def test_pandas_frame_columns_work_as_is() -> None:
    frame = pd.DataFrame({"family": pd.array(["A", "B", None], dtype="str"), "n": [1.0, None, 3.0]})
    profile = _profile_of({c: frame[c].to_numpy() for c in frame}, {"family": "categorical", "n": "numeric"})
    assert profile.features[0].summary.values == ["<missing>", "A", "B"]
    assert profile.features[1].summary.missing == pytest.approx(1 / 3)
