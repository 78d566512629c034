"""Feature computation on column batches: calendar parts, keyed tables, unknown values."""

from __future__ import annotations

import dataclasses
import json
import weakref

import numpy as np
import pandas as pd
import pytest

from cd4ml.evaluate.metrics import METRICS
from cd4ml.features import transforms as T
from cd4ml.task import REGRESSION


def test_calendar_parts_match_pandas() -> None:
    t = pd.date_range("2019-12-25", "2021-01-10 23:00", freq="7h")
    arr = T.as_time(t.to_numpy())
    iso = t.isocalendar()
    expected = {"year": t.year, "month": t.month, "day": t.day, "dayofweek": t.dayofweek,
                "dayofyear": t.dayofyear, "weekofyear": iso.week.to_numpy(), "hour": t.hour,
                "is_weekend": (t.dayofweek >= 5).astype(int), "is_month_end": t.is_month_end.astype(int)}
    for part, want in expected.items():
        np.testing.assert_array_equal(T.calendar_part(arr, part), np.asarray(want, dtype=np.int64), err_msg=part)


def test_iso_strings_parse_as_times() -> None:
    assert T.calendar_part(T.as_time(np.array(["2024-05-01"])), "dayofweek").tolist() == [2]


def test_key_table_finds_rows_and_flags_unknown() -> None:
    a = np.array(["x", "y", "x", "z"])
    b = np.array([1, 1, 2, 1])
    table, inverse = T.KeyTable.group([a, b])
    assert len(table.keys) == 4 and len(set(inverse.tolist())) == 4
    idx, found = table.find([np.array(["y", "q", "x"]), np.array([1, 1, 3])])
    assert found.tolist() == [True, False, False]
    assert table.keys[idx[0]] == table.keys[inverse[1]]


def test_vocabulary_maps_unknown_and_mismatched_types_to_minus_one() -> None:
    vocab = T.Vocabulary.fit(np.array([3, 1, 2, 2]))
    assert vocab.codes(np.array([1, 2, 3, 4])).tolist() == [0, 1, 2, -1]
    assert vocab.codes(np.array(["1"])).tolist() == [-1]
    text = T.Vocabulary.fit(np.array(["b", "a"], dtype=object))
    assert text.codes(np.array(["a", "c"])).tolist() == [0, -1]


def _plan() -> T.FeaturePlan:
    # As a release written before tasks and time slots keeps it: no `task`, no `slot_minutes`.
    spec = T.FeatureSpec.from_json({
        "time_column": "date", "inputs": ["date", "shop", "item"], "lookups": [{"key": "item", "columns": ["kind"]}],
        "lookup_columns": ["kind"], "calendar": ["dayofweek"], "holidays": True, "custom": [],
        "target_encodings": [["shop"]], "encoding_smoothing": 0.0, "categorical": ["kind"],
        "numeric": ["dayofweek", "is_holiday"], "target_transform": "log1p", "clip_min": 0.0})
    batch = {"date": np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[D]"),
             "shop": np.array([1, 1, 2]), "item": np.array([10, 11, 10]),
             "kind": np.array(["milk", "bread", "milk"])}
    y = T.forward_target(spec, np.array([3.0, 5.0, 7.0]))
    return T.FeaturePlan.fit(spec, batch, y, {}, np.array(["2024-01-01"], dtype="datetime64[D]"))


def test_plan_serves_from_keys_only_and_handles_unknowns() -> None:
    plan = _plan()
    request = {"date": np.array(["2024-01-01", "2024-01-06"], dtype="datetime64[D]"),
               "shop": np.array([2, 99]), "item": np.array([11, 12])}
    X = plan.transform(request)
    assert plan.feature_names == ["dayofweek", "is_holiday", "kind", "te__shop"]
    assert X[0, :2].tolist() == [0.0, 1.0]  # Monday, a holiday
    assert X[0, 2] == T.Vocabulary(plan.arrays["vocab.kind"]).codes(np.array(["bread"]))[0]  # looked up
    assert np.isnan(X[1, 2])  # unknown item -> unknown category
    assert X[0, 3] == pytest.approx(np.log1p(7.0))  # shop 2's mean in log space
    assert X[1, 3] == pytest.approx(plan.arrays["global_mean"][0])  # unknown shop -> prior
    with pytest.raises(ValueError, match="missing input column"):
        plan.transform({"date": request["date"]})


def test_nwrmsle_weights_perishables() -> None:
    y = np.array([0.0, 10.0])
    p = np.array([1.0, 10.0])
    w = np.array([1.25, 1.0])
    assert METRICS["nwrmsle"](y, p, w) == pytest.approx(np.sqrt(1.25 * np.log(2) ** 2 / 2.25))
    assert METRICS["rmse"](y, p, w) == pytest.approx(np.sqrt(0.5))  # unweighted metric ignores weights
    assert METRICS["r2"].worse_by(0.5, 0.6) > 0 and METRICS["rmse"].worse_by(9.0, 10.0) < 0


def _not_trusted(x):
    return x


@pytest.mark.parametrize("func", [_not_trusted, eval, np.load])
def test_skops_refuses_names_that_are_not_trusted_classes(tmp_path, func) -> None:
    # builtins.eval passed an allow-list of module prefixes: a crafted model file could run code at load.
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from cd4ml.errors import ReleaseError
    from cd4ml.release import estimators

    sio.dump(FunctionTransformer(func=func), tmp_path / "model.skops")
    with pytest.raises(ReleaseError, match="refusing to load names that are not classes of sklearn, numpy, scipy"):
        estimators.load(tmp_path, {"kind": "skops", "file": "model.skops"})


_LGBM_REFERENCE = """
import sys
import lightgbm as lgb
import numpy as np
data = np.load(sys.argv[1], allow_pickle=False)
params = {k: data[k].item() for k in data.files if k not in ("X", "y", "categorical")}
model = lgb.LGBMRegressor(**params).fit(data["X"], data["y"], categorical_feature=data["categorical"].tolist())
sys.stdout.write(model.booster_.model_to_string())
"""


def test_lightgbm_through_its_native_api_grows_the_trees_of_lgbmregressor(tmp_path) -> None:
    import subprocess
    import sys

    from cd4ml.config import ModelConfig
    from cd4ml.release import estimators

    rng = np.random.default_rng(7)
    X = np.column_stack([rng.normal(size=3000), rng.integers(0, 12, 3000), rng.uniform(size=3000)])
    X[rng.uniform(size=3000) < 0.05, 2] = np.nan
    y = 3 * X[:, 0] + (X[:, 1] % 3) + rng.normal(scale=0.1, size=3000)
    # scikit-learn's names for native params (bagging, feature fraction, L2): the aliases must carry.
    # No n_jobs: the thread count LGBMRegressor derives (physical cores) is in the model file too.
    params = {"n_estimators": 25, "num_leaves": 15, "min_child_samples": 10, "subsample": 0.7, "subsample_freq": 1,
              "colsample_bytree": 0.8, "reg_lambda": 1.0}
    ours = estimators.make_estimator(ModelConfig(algorithm="lightgbm", params=params), 3, REGRESSION)
    np.savez(tmp_path / "data.npz", X=X, y=y, categorical=np.array([1]), **ours.params)
    # Handed over, X is freed: the caller keeps no copy alive next to LightGBM's bins.
    alive, handover = weakref.ref(X), estimators.Handover(X)
    del X
    estimators.fit(ours, handover, y, [1], "lightgbm")
    assert alive() is None
    with pytest.raises(RuntimeError, match="already taken"):
        handover.take()
    # In a child: once LightGBM is imported without scikit-learn, LGBMRegressor is refused in that process.
    reference = subprocess.run([sys.executable, "-c", _LGBM_REFERENCE, str(tmp_path / "data.npz")],
                               capture_output=True, text=True, check=True).stdout
    assert ours.booster_.model_to_string() == reference


def test_lightgbm_is_imported_without_scikit_learn() -> None:
    import subprocess
    import sys

    code = ("import sys; from cd4ml.release import estimators; lgb = estimators.import_lightgbm(); "
            "print(lgb.Booster.__name__, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["Booster", "False"]


@pytest.mark.parametrize("values", [
    np.array([5, 1, 3, 3, 9]), np.array([0.5, 2.0, 7.25]), np.array(["b", "a", "GROCERY I", "b"]),
])
def test_small_batches_get_the_same_codes_as_large_ones(values) -> None:
    vocab = T.Vocabulary.fit(values)
    rng = np.random.default_rng(0)
    probe = np.concatenate([values, values[:1]])
    unknown = np.array(["zz"]) if values.dtype.kind == "U" else np.array([-1], dtype=values.dtype)
    big = rng.permutation(np.concatenate([np.repeat(probe, 20), unknown]))  # vectorised path
    expected = vocab.codes(big)
    small = np.concatenate([vocab.codes(big[i:i + 7]) for i in range(0, len(big), 7)])  # dict path
    np.testing.assert_array_equal(small, expected)
    assert (expected == -1).sum() == 1


def test_small_batches_find_the_same_table_rows_as_large_ones() -> None:
    rng = np.random.default_rng(1)
    a = rng.choice(np.array(["x", "y", "GROCERY I"]), 500)
    b = rng.integers(0, 7, 500)
    table, _ = T.KeyTable.group([a, b])
    probe_a = np.concatenate([a[:60], np.array(["unseen"])])
    probe_b = np.concatenate([b[:60], np.array([3])])
    idx_big, found_big = table.find([np.repeat(probe_a, 1), np.repeat(probe_b, 1)])  # 61 rows: vectorised
    small = [table.find([probe_a[i:i + 5], probe_b[i:i + 5]]) for i in range(0, 61, 5)]  # dict path
    np.testing.assert_array_equal(np.concatenate([f for _, f in small]), found_big)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in small])[found_big], idx_big[found_big])
    assert found_big[:60].all() and not found_big[60]
    assert not table.find([np.array([1]), np.array([3])])[1][0]  # numbers never match a text key


@pytest.mark.parametrize("values", [
    np.array([7, -3, 7, 100, 2]),  # a small range: counted
    np.array([5, 2**40, -(2**40), 5]),  # a wide range: sorted
    np.array(["GROCERY I", "b", "", "b", "é", "GROCERY I"]),
    np.array([0.5, np.nan, -1.0, 0.5, np.nan]),
])
def test_large_columns_get_the_vocabulary_and_codes_np_unique_gives(values) -> None:
    big = np.random.default_rng(2).permutation(np.repeat(values, 2000))  # over the shortcuts' threshold
    vocab, codes = T.Vocabulary.fit_codes(big)
    expected = np.unique(big)
    expected = expected[~np.isnan(expected)] if expected.dtype.kind == "f" else expected
    assert vocab.values.dtype == expected.dtype
    np.testing.assert_array_equal(vocab.values, expected)
    np.testing.assert_array_equal(codes, T.Vocabulary(expected).codes(big))


def test_a_release_spec_reads_back_as_the_json_it_was_written_as() -> None:
    doc = {"time_column": "t", "inputs": ["t", "k"], "lookups": [{"key": "k", "columns": ["a", "b"]}],
           "lookup_columns": ["a", "b"], "calendar": ["slot"], "slot_minutes": 30, "holidays": False,
           "custom": ["feats:extra"], "target_encodings": [["k", "a"]], "encoding_smoothing": 2.0,
           "categorical": ["a"], "numeric": ["slot"], "target_transform": None, "clip_min": None,
           "task": {"name": "binary", "classes": [False, True], "threshold": 0.4, "label_type": "bool"},
           "history": {"series": ["k"], "time": "t", "target": "y", "count": 30, "unit": "min", "horizon": 2,
                       "lags": [2, 48], "windows": [{"size": 4, "stats": ["mean", "std"], "gap": 3}],
                       "columns": ["a"]}}
    spec = T.FeatureSpec.from_json(json.loads(json.dumps(doc)))
    assert spec.lookups[0].columns == ("a", "b") and spec.target_encodings == (("k", "a"),)
    assert spec.history is not None and spec.history.windows == (T.Window(4, ("mean", "std"), 3),)
    assert spec.history.names == ["y_lag2", "y_lag48", "y_mean4_gap3", "y_std4_gap3", "a_lag2", "a_lag48"]
    assert spec.history.lookback == 48
    assert json.dumps(spec.to_json()) == json.dumps(doc)  # same keys, same order
    history = {k: v for k, v in doc["history"].items() if k != "columns"}  # a release from before covariates
    assert T.HistorySpec.from_json(history) == dataclasses.replace(spec.history, columns=())
    old = {k: v for k, v in doc.items() if k not in ("slot_minutes", "task", "history")}  # a release from before
    assert T.FeatureSpec.from_json(old) == dataclasses.replace(spec, slot_minutes=None, task=None, history=None)


def test_fit_transform_equals_fit_then_transform_and_derive() -> None:
    rng = np.random.default_rng(3)
    n = 20000
    spec = T.FeatureSpec(
        time_column="date", inputs=("date", "shop", "item", "grade"), lookups=(T.Lookup("item", ("kind",)),),
        lookup_columns=("kind",), calendar=("dayofweek",), slot_minutes=None, holidays=False, custom=(),
        target_encodings=(("shop", "kind"), ("grade",)), encoding_smoothing=2.0, categorical=("kind", "grade"),
        numeric=("dayofweek",), target_transform="log1p", clip_min=0.0, task=None)
    item = rng.integers(0, 50, n)
    batch = {"date": np.sort(rng.integers(0, 400, n)).astype("datetime64[D]"), "shop": rng.integers(1, 9, n),
             "item": item, "kind": np.array(["milk", "bread", "tea"])[item % 3],
             "grade": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 4, n).astype(float))}
    y = T.forward_target(spec, rng.gamma(2.0, 3.0, n))
    plan, X, derived = T.FeaturePlan.fit_transform(spec, batch, y, {}, np.array([], dtype="datetime64[D]"))
    reference = T.FeaturePlan.fit(spec, batch, y, {}, np.array([], dtype="datetime64[D]"))
    assert plan.arrays.keys() == reference.arrays.keys()
    for k, v in reference.arrays.items():
        assert plan.arrays[k].dtype == v.dtype
        np.testing.assert_array_equal(plan.arrays[k], v, err_msg=k)
    served = reference.transform(batch)
    np.testing.assert_array_equal(X[:, :3], served[:, :3])  # dayofweek, kind, grade: as served
    # The encodings (the last two columns) are cross-fitted on the training rows, computed here by hand.
    frame = pd.DataFrame({"shop": batch["shop"], "kind": batch["kind"], "grade": batch["grade"], "y": y})
    for j, cols in zip((3, 4), (["shop", "kind"], ["grade"])):
        expected = np.empty(n)
        folds = T.encoding_folds(n)
        assert sorted(np.bincount(folds)) == [n // T.ENCODING_FOLDS] * T.ENCODING_FOLDS
        for fold in (np.flatnonzero(folds == f) for f in range(T.ENCODING_FOLDS)):
            other = frame.drop(index=fold).dropna(subset=cols).groupby(cols)["y"].agg(["sum", "count"])
            m = 2.0 * (T.ENCODING_FOLDS - 1) / T.ENCODING_FOLDS  # the smoothing, scaled to the other folds' share
            smoothed = (other["sum"] + m * y.mean()) / (other["count"] + m)
            keys = pd.MultiIndex.from_frame(frame.loc[fold, cols]) if len(cols) > 1 else frame.loc[fold, cols[0]]
            expected[fold] = smoothed.reindex(keys).fillna(y.mean()).to_numpy()
        np.testing.assert_allclose(X[:, j], expected, rtol=1e-12, err_msg=str(cols))
        assert not np.array_equal(X[:, j], served[:, j])  # a row's own target is not in its training encoding
    for c, v in reference.derive(batch).items():
        np.testing.assert_array_equal(derived[c], v, err_msg=c)
    # With `keep`, the caller's batch is given up (emptied, its arrays freed early) for the same matrix.
    given = dict(batch)
    _, X_kept, kept = T.FeaturePlan.fit_transform(spec, given, y, {}, np.array([], dtype="datetime64[D]"),
                                                  keep=["shop", "dayofweek"])
    assert given == {} and set(kept) == {"shop", "dayofweek"}
    np.testing.assert_array_equal(X_kept, X)
    for c in kept:
        np.testing.assert_array_equal(kept[c], derived[c])
    assert X_kept.flags.f_contiguous  # each column written in one pass, its source freed after
    # A column listed twice (numeric or categorical) is in the matrix twice, as `transform` puts it.
    twice = dataclasses.replace(spec, categorical=("kind", "grade", "kind"), numeric=("dayofweek", "dayofweek"))
    plan2, X2, _ = T.FeaturePlan.fit_transform(twice, dict(batch), y, {}, np.array([], dtype="datetime64[D]"),
                                               keep=["shop"])
    np.testing.assert_array_equal(X2[:, :5], plan2.transform(batch)[:, :5])
    np.testing.assert_array_equal(X2[:, 5:], X[:, 3:])


def test_shared_text_training_batches_fit_what_unicode_batches_fit() -> None:
    from cd4ml.release.package import frame_to_batch

    rng = np.random.default_rng(4)
    n = 20000
    spec = T.FeatureSpec(
        time_column="date", inputs=("date", "item"), lookups=(T.Lookup("item", ("kind",)),),
        lookup_columns=("kind",), calendar=("dayofweek",), slot_minutes=None, holidays=False, custom=("tagged",),
        target_encodings=(("kind", "item"), ("shelf",)), encoding_smoothing=2.0, categorical=("kind", "shelf"),
        numeric=("dayofweek", "long_name"), target_transform="log1p", clip_min=0.0, task=None)
    item = rng.integers(0, 50, n)
    kinds = np.array(["milk", "bread", "té verde", "Santo Domingo de los Tsachilas"])
    kind = kinds[item % 4]
    kind[n // 2:][item[n // 2:] == 7] = "bread"  # an attribute that changed: the rows no longer equal the lookup
    frame = pd.DataFrame({"date": np.sort(rng.integers(0, 400, n)).astype("datetime64[s]"), "item": item,
                          "kind": pd.array(kind, dtype="str")})
    seen: list[str] = []

    def tagged(batch):  # a project's function: unicode text in training as in serving (np.strings needs it)
        seen.append(batch["kind"].dtype.kind)
        return {"shelf": np.strings.add(batch["kind"], "/a"), "long_name": np.strings.str_len(batch["kind"]) > 8}

    y = T.forward_target(spec, rng.gamma(2.0, 3.0, n))
    holidays = np.array([], dtype="datetime64[D]")
    unicode, shared = frame_to_batch(frame), frame_to_batch(frame, shared_text=True)
    assert unicode["kind"].dtype.kind == "U" and shared["kind"].dtype == object
    assert shared["kind"].nbytes == 8 * n and len({id(v) for v in shared["kind"]}) == 4  # a pointer a row
    results = [T.FeaturePlan.fit_transform(spec, b, y, {"tagged": tagged}, holidays, keep=["kind"])
               for b in (unicode, shared)]
    assert seen == ["U", "U"]
    (plan, X, kept), (plan_s, X_s, kept_s) = results
    assert plan.arrays.keys() == plan_s.arrays.keys()
    for k, v in plan.arrays.items():
        assert plan_s.arrays[k].dtype == v.dtype, k  # stored text is unicode, never objects
        np.testing.assert_array_equal(plan_s.arrays[k], v, err_msg=k)
    np.testing.assert_array_equal(X_s, X)
    np.testing.assert_array_equal(kept_s["kind"], kept["kind"])
    # What a request of a few rows gets from the plan trained on shared text: the training rows' features
    # (the encodings as fitted on every training row: the matrix has them cross-fitted).
    few = {"date": frame["date"].to_numpy()[-5:], "item": item[-5:]}
    np.testing.assert_array_equal(plan_s.transform(few), plan.transform(frame_to_batch(frame))[-5:])
    np.testing.assert_array_equal(plan_s.transform(few)[:, :4], X[-5:, :4])


def test_custom_functions_see_a_batch_they_can_read_and_write() -> None:
    work = {"kind": np.array(["a", "b"], dtype=object), "n": np.array([1, 2])}
    view = T._UnicodeText(work)
    assert view["kind"].dtype.kind == "U" and view["n"] is work["n"] and sorted(view) == ["kind", "n"]
    view["extra"] = np.array([0, 0])
    del view["n"]
    assert sorted(view) == ["extra", "kind"] and len(view) == 2 and "n" not in view
    assert set(work) == {"kind", "n"} and work["kind"].dtype == object  # the training batch is untouched
    with pytest.raises(KeyError):
        del view["n"]


def test_a_training_row_never_sees_its_own_target_through_an_encoding() -> None:
    # Ten shops of one row each: a leaky encoding would hand each row its own target.
    n = 10
    spec = T.FeatureSpec(
        time_column="date", inputs=("date", "shop"), lookups=(), lookup_columns=(), calendar=(), slot_minutes=None,
        holidays=False, custom=(), target_encodings=(("shop",),), encoding_smoothing=0.0, categorical=(),
        numeric=(), target_transform=None, clip_min=None, task=None)
    batch = {"date": np.arange(n).astype("datetime64[D]"), "shop": np.arange(n)}
    y = np.arange(n, dtype=float) * 10
    plan, X, _ = T.FeaturePlan.fit_transform(spec, batch, y, {}, np.array([], dtype="datetime64[D]"))
    np.testing.assert_array_equal(X[:, 0], np.full(n, y.mean()))  # no other row of its shop: the prior
    np.testing.assert_array_equal(plan.transform(batch)[:, 0], y)  # served: each shop's training mean


def test_integer_codes_of_a_large_batch_equal_the_searched_ones() -> None:
    vocab = T.Vocabulary(np.array([3, 5, 6, 40, 41], dtype=np.int64))
    x = np.random.default_rng(4).integers(-5, 50, size=T._LARGE_BATCH + 1000)  # gaps, below and above the range
    expected = [vocab.values.tolist().index(v) if v in vocab.values else -1 for v in x.tolist()]
    np.testing.assert_array_equal(vocab.codes(x), expected)
    np.testing.assert_array_equal(vocab.codes(x[:10]), expected[:10])  # the small-batch path agrees
