"""History features (issue 17): each row's own series' past values, computed in training from the pinned table,
served from an online history store that grows from actuals, never nearer than the horizon, and the same floats
in both (replayed through HTTP day by day)."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.errors import ConfigError
from cd4ml.features.transforms import HistorySpec, SeriesHistory, Window
from cd4ml.serve.history import HistoryStore, StoredActuals
from helpers import Service, cli, edit_yaml, make_csv_project

SPEC = HistorySpec(series=("region",), time="t", target="y", count=1, unit="D", horizon=1, lags=(1, 3),
                   windows=(Window(4, ("mean", "std", "min", "max"), 1), Window(3, ("mean",), 2)))


def _panel(seed: int = 3) -> pd.DataFrame:
    """Three series with gaps, one of them new in the last week."""
    rng = np.random.default_rng(seed)
    frames = []
    for region, start, days in (("a", 0, 40), ("b", 5, 35), ("c", 33, 7)):
        t = np.datetime64("2024-03-01") + start + np.arange(days)
        frame = pd.DataFrame({"t": t, "region": region, "y": rng.normal(50, 10, days).round(3)})
        frames.append(frame.drop(index=rng.choice(days, size=days // 6, replace=False)))
    return pd.concat(frames, ignore_index=True)


def _batch(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"t": frame["t"].to_numpy(), "region": frame["region"].to_numpy().astype(str),
            "y": frame["y"].to_numpy(dtype=np.float64)}


def _reference(frame: pd.DataFrame, spec: HistorySpec) -> dict[str, np.ndarray]:
    """pandas on each series reindexed to its full daily grid: shift for lags, rolling windows shifted by the gap."""
    out = {name: np.full(len(frame), np.nan) for name in spec.names}
    for _, rows in frame.groupby("region"):
        grid = pd.Series(rows["y"].to_numpy(), index=rows["t"].to_numpy()).asfreq("D")
        at = pd.DatetimeIndex(rows["t"])
        names = iter(spec.names)
        for lag in spec.lags:
            out[next(names)][rows.index] = grid.shift(lag).reindex(at).to_numpy()
        for w in spec.windows:
            rolling = grid.shift(w.gap).rolling(w.size, min_periods=1)
            stats = {"mean": rolling.mean(), "min": rolling.min(), "max": rolling.max(),
                     "std": grid.shift(w.gap).rolling(w.size, min_periods=2).std()}
            for stat in w.stats:
                out[next(names)][rows.index] = stats[stat].reindex(at).to_numpy()
    return out


# -- the features ------------------------------------------------------------------------------------------

def test_history_features_match_pandas_on_series_with_gaps() -> None:
    frame = _panel()
    got = SeriesHistory(SPEC, _batch(frame)).features(_batch(frame))
    expected = _reference(frame, SPEC)
    assert list(got) == SPEC.names == ["y_lag1", "y_lag3", "y_mean4", "y_std4", "y_min4", "y_max4", "y_mean3_gap2"]
    for name in SPEC.names:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-9, err_msg=name)
    # Missing history is NaN, never zero: each series' first day, and the new series' days before its second.
    first = frame.groupby("region")["t"].idxmin().to_numpy()
    assert np.isnan(got["y_lag1"][first]).all() and np.isnan(got["y_mean4"][first]).all()


@pytest.mark.parametrize("dense", [True, False])
def test_a_covariates_lags_are_its_own_past_values_per_series(dense: bool) -> None:
    frame = _panel().assign(promo=lambda f: (np.arange(len(f)) * 7 % 3 == 0).astype(float))
    frame.loc[frame.index[::11], "y"] = np.nan  # steps whose target is not known (yet), their covariate is
    spec = dataclasses.replace(SPEC, columns=("promo",))
    batch = {**_batch(frame), "promo": frame["promo"].to_numpy()}
    # A row a century later makes the grid huge: then the same features are searched, not gathered.
    far = {"t": np.array(["2124-01-01"], dtype="datetime64[ns]"), "region": np.array(["a"]), "y": np.array([1.0]),
           "promo": np.array([1.0])}
    history = SeriesHistory(spec, batch if dense else {c: np.concatenate([v, far[c]]) for c, v in batch.items()})
    assert history._dense == dense
    got = history.features(batch)
    assert spec.names[-2:] == ["promo_lag1", "promo_lag3"]
    for lag in spec.lags:
        expected = np.full(len(frame), np.nan)
        for _, rows in frame.groupby("region"):
            grid = pd.Series(rows["promo"].to_numpy(), index=rows["t"].to_numpy()).asfreq("D")
            expected[rows.index] = grid.shift(lag).reindex(pd.DatetimeIndex(rows["t"])).to_numpy()
        np.testing.assert_array_equal(got[f"promo_lag{lag}"], expected)
    target_only = SeriesHistory(SPEC, _batch(frame)).features(_batch(frame))
    for name in SPEC.names:  # the target's features are as without the covariate
        np.testing.assert_array_equal(got[name], target_only[name], err_msg=name)


@pytest.mark.parametrize("horizon", [1, 3])
def test_no_feature_reads_its_row_or_anything_nearer_than_the_horizon(horizon: int) -> None:
    spec = HistorySpec(series=("region",), time="t", target="y", count=1, unit="D", horizon=horizon,
                       lags=(horizon, horizon + 2), windows=(Window(5, ("mean", "std", "min", "max"), horizon),))
    frame = _panel()
    batch = _batch(frame)
    before = SeriesHistory(spec, batch).features(batch)
    cut = np.datetime64("2024-03-20")
    changed = dict(batch, y=np.where(batch["t"] >= cut, batch["y"] * 7 + 1000, batch["y"]))  # days from the cut on
    after = SeriesHistory(spec, changed).features(batch)
    honest = batch["t"] < cut + np.timedelta64(horizon, "D")  # their features read days before the cut only
    for name in spec.names:
        np.testing.assert_array_equal(before[name][honest], after[name][honest], err_msg=name)
        assert not np.array_equal(before[name][~honest], after[name][~honest], equal_nan=True), name


def test_features_from_a_few_stored_rows_are_the_same_floats_as_from_the_whole_table() -> None:
    frame = _panel()
    whole = SeriesHistory(SPEC, _batch(frame))
    query = frame[frame["t"] >= np.datetime64("2024-04-05")]
    kept = frame[(frame["t"] >= np.datetime64("2024-04-05") - SPEC.lookback) & frame["region"].isin(["a", "c"])]
    few = SeriesHistory(SPEC, _batch(kept))
    for name, column in whole.features(_batch(query)).items():
        mine = query["region"].isin(["a", "c"]).to_numpy()
        np.testing.assert_array_equal(few.features(_batch(query))[name][mine], column[mine], err_msg=name)
        assert np.isnan(few.features(_batch(query))[name][~mine]).all()  # a series the rows do not hold


def test_rows_done_in_blocks_get_the_same_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    from cd4ml.features import transforms

    frame = _panel()
    history = SeriesHistory(SPEC, _batch(frame))
    whole = history.features(_batch(frame))
    monkeypatch.setattr(transforms, "_HISTORY_ROWS", 7)
    for name, column in history.features(_batch(frame)).items():
        np.testing.assert_array_equal(column, whole[name], err_msg=name)


def test_a_grid_too_sparse_to_lay_out_is_searched_with_the_same_results() -> None:
    years = np.array(["1990-01-01", "2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[s]")
    batch = {"t": years, "region": np.array(["a", "a", "a", "a"]), "y": np.array([1.0, 2.0, 3.0, 4.0])}
    spec = HistorySpec(series=("region",), time="t", target="y", count=1, unit="h", horizon=24, lags=(24, 48),
                       windows=(Window(49, ("mean", "max"), 24),))
    history = SeriesHistory(spec, batch)
    assert not history._dense  # 34 years of hours for 4 rows
    got = history.features(batch)
    np.testing.assert_array_equal(got["y_lag24"], [np.nan, np.nan, 2.0, 3.0])
    np.testing.assert_array_equal(got["y_lag48"], [np.nan, np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(got["y_mean49"], [np.nan, np.nan, 2.0, 2.5])
    np.testing.assert_array_equal(got["y_max49"], [np.nan, np.nan, 2.0, 3.0])


# -- the project file ----------------------------------------------------------------------------------------

DAYS, FUTURE, REGIONS = 150, 6, ["north", "south", "east"]


def _ar_csv(seed: int = 5) -> str:
    """Daily values of three regions, each an AR(1) around its own level with a weekday pattern: yesterday's
    value knows much that no calendar feature does, and the level is stable, so trees can use it."""
    rng = np.random.default_rng(seed)
    rows = ["t,region,y"]
    days = np.datetime64("2024-01-01") + np.arange(DAYS + FUTURE)
    for i, region in enumerate(REGIONS):
        level, x = 100.0 + 40 * i, 0.0
        for day in days:
            x = 0.6 * x + rng.normal(0, 6)
            weekday = 12.0 * ((day.astype(int) + 3) % 7 >= 5)
            rows.append(f"{day},{region},{level + x + weekday:.3f}")
    return "\n".join(rows) + "\n"


def _history_project(root: Path, **changes: Any) -> Path:
    csv = _ar_csv()
    lines = csv.splitlines()
    known = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] < str(np.datetime64("2024-01-01") + DAYS)]
    root = make_csv_project(
        root, "\n".join(known) + "\n", {"t": {"type": "date"}, "region": {"type": "str"}, "y": {"type": "float"}},
        split={"holdout_days": 21},
        features={"calendar": ["dayofweek"], "categorical": ["region"], "numeric": ["dayofweek"],
                  "history": {"lags": [1, 2, 7], "windows": [{"size": 7, "stats": ["mean", "std"]}]}},
        **{"forecast": {"series": ["region"], "frequency": "1D"}, "baseline__group_by": ["region"],
           "acceptance": {"latency_p99_ms": 1000},
           "model__params": {"n_estimators": 80, "learning_rate": 0.1, "min_child_samples": 5, "n_jobs": 1},
           **changes})
    (root / "all.csv").write_text(csv)
    return root


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"features__history__lags": [0]}, "features.history", "from 1 to 100000"),
    ({"forecast__horizon": 2}, "features.history.lags", "nearer than forecast.horizon 2"),
    ({"features__history__windows": [{"size": 3, "gap": 1}], "features__history__lags": [3], "forecast__horizon": 3},
     "features.history.windows", "gap 1 is nearer"),
    ({"forecast": None, "baseline__kind": ["group_mean"]}, "features.history", "forecast:"),
    ({"features__history": {}}, "features.history", "give lags, windows or both"),
    ({"features__history__lags": [1, 1]}, "features.history", "twice"),
    ({"features__history__windows": [{"size": 3, "stats": ["median"]}]}, "features.history.windows", "mean"),
    ({"schema__columns__y_lag1": {"type": "float", "nullable": True}}, "features.history", "schema.columns"),
    ({"features__history__columns": ["region"]}, "features.history", "names 'region': a covariate must be a number"),
    ({"features__history__columns": ["y"]}, "features.history", "neither the target nor a series column"),
    ({"schema__columns__x": {"type": "float"}, "features__history__columns": ["x"], "features__history__lags": []},
     "features.history", "a covariate's features are its lags"),
])
def test_bad_history_settings_name_their_key(tmp_path: Path, changes: dict[str, Any], key: str, words: str) -> None:
    root = _history_project(tmp_path / "p", **changes)
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert (err.value.key or "").startswith(key) and words in str(err.value), (err.value.key, str(err.value))


@pytest.mark.slow
def test_history_served_live_equals_the_pipeline_day_by_day(tmp_path: Path) -> None:
    """The model with lags beats every naive forecast; then the release is served, and each future day is
    forecast, answered 422 until the day before's actual arrives, and equals what the release computes from the
    whole table."""
    root = _history_project(tmp_path / "p")
    cli(root, "data", "ingest", check=0)
    out = cli(root, "run", "--json", check=0)
    assert '"passed": true' in out.stdout
    from cd4ml.release.registry import Registry

    project = load_project(root)
    release = Registry.for_project(project).load("1", project.release_cache)
    assert release.spec.history is not None and release.history_end == np.datetime64("2024-05-29T00:00:00")
    everything = pd.read_csv(root / "all.csv", parse_dates=["t"])
    future = everything[everything["t"] > pd.Timestamp("2024-05-29")].sort_values("t", kind="stable")
    served: list[float] = []
    with Service(root) as service:
        before = service.client.post("/predict", json={"t": "2024-05-29", "region": "north"})
        assert before.status_code == 422 and "history cut-off" in before.text, before.text
        for day, rows in future.groupby("t"):
            records = [{"t": day.date().isoformat(), "region": r} for r in rows["region"]]
            ahead = service.client.post("/predict", json=[{**rec, "t": (day + pd.Timedelta(days=1)).date().isoformat()}
                                                          for rec in records])
            assert ahead.status_code == 422 and "latest actual" in ahead.text, ahead.text
            answer = service.client.post("/predict", json=records)
            assert answer.status_code == 200, answer.text
            served += answer.json()["predictions"]
            actuals = [{**rec, "y": y} for rec, y in zip(records, rows["y"])]
            assert service.client.post("/feedback", json=actuals).status_code == 202
            assert service.client.post("/feedback", json=actuals[::-1]).status_code == 202  # again, out of order
        again = service.client.post("/predict", json={"t": "2024-06-04", "region": "east"}).json()["prediction"]
    offline = release.predict({"t": future["t"].to_numpy(), "region": future["region"].to_numpy().astype(str)},
                              history={c: everything[c].to_numpy() for c in ("t", "region", "y")})
    np.testing.assert_array_equal(np.array(served), offline)
    import cd4ml

    np.testing.assert_array_equal(cd4ml.score(project, future.drop(columns="y")), offline)  # batch scoring too
    with pytest.raises(cd4ml.Cd4mlError, match="row 1: 2024-06-06"):  # beyond the latest actual plus the horizon
        cd4ml.score(project, pd.DataFrame({"t": pd.to_datetime(["2024-06-06"]), "region": ["north"]}))
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        stored = db.execute("SELECT COUNT(*), MAX(t) FROM history WHERE t > ?", [int(np.datetime64(
            "2024-05-29T00:00:00").astype(np.int64))]).fetchone()
    assert stored == (len(future), int(np.datetime64("2024-06-04T00:00:00").astype(np.int64)))
    # A restart keeps the actuals: the same forecast.
    with Service(root) as service:
        assert service.client.post("/predict", json={"t": "2024-06-04", "region": "east"}).json()["prediction"] == again


def test_stale_history_fallback_answers_and_flags(tmp_path: Path) -> None:
    root = _history_project(tmp_path / "p", serving={"stale_history": "fallback"})
    cli(root, "data", "ingest", check=0)
    cli(root, "run", check=0)
    with Service(root) as service:
        answer = service.client.post("/predict", json=[{"t": "2024-05-30", "region": "north"},
                                                       {"t": "2024-06-02", "region": "north"}])
    assert answer.status_code == 200, answer.text
    assert answer.json()["fallback"] == [False, True]


def test_two_times_of_one_series_in_one_step_are_refused_at_ingest(tmp_path: Path) -> None:
    csv = ("t,region,y\n2024-03-01T09:00,north,1\n2024-03-01T10:00,north,2\n2024-03-01T10:30,north,3\n"
           "2024-03-01T10:30,south,4\n")
    root = make_csv_project(tmp_path / "p", csv, {"t": {"type": "datetime"}, "region": {"type": "str"},
                                                  "y": {"type": "float"}},
                            forecast={"series": ["region"], "frequency": "1h"}, features__calendar=["hour"],
                            features__numeric=["hour"])
    refused = cli(root, "data", "ingest", check=4)
    said = refused.stdout + refused.stderr
    assert "shares its 1h time step with another row of its series (region)" in said, said
    assert "north" in said and "10:30" in said and "south" not in said
    edit_yaml(root, forecast__frequency="30min")
    cli(root, "data", "ingest", check=0)


@pytest.mark.slow
def test_two_workers_share_the_history_store_and_hostile_keys_are_data(tmp_path: Path) -> None:
    root = _history_project(tmp_path / "p")
    cli(root, "data", "ingest", check=0)
    cli(root, "run", check=0)
    hostile = "x'); DROP TABLE history;--<script>"
    with Service(root, "--workers", "2") as service:
        service.wait_until("/ready", 200)
        day1 = [{"t": "2024-05-30", "region": r} for r in REGIONS]
        assert service.client.post("/predict", json=day1).status_code == 200
        fed = service.client.post("/feedback", json=[{**r, "y": 100.0 + i} for i, r in enumerate(day1)]
                                  + [{"t": "2024-05-30", "region": hostile, "y": 1.0}])
        assert fed.status_code == 202, fed.text
        # Whichever worker answers, it reads the actuals the other stored: never a 422, always the same forecast.
        answers = [service.client.post("/predict", json={"t": "2024-05-31", "region": "north"}) for _ in range(24)]
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["prediction"] for a in answers}) == 1
        odd = service.client.post("/predict", json={"t": "2024-05-31", "region": hostile}).json()
        assert odd["fallback"] is True  # a region the model never saw, answered and flagged
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        assert db.execute("SELECT value FROM history WHERE series = ?", [f'["{hostile}"]']).fetchone() == (1.0,)
        assert db.execute("SELECT COUNT(*) FROM history WHERE t = ?",
                          [int(np.datetime64("2024-05-30T00:00:00").astype(np.int64))]).fetchone() == (4,)


def test_an_actual_that_is_no_number_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    root = _history_project(tmp_path / "p")
    (root / "actuals.csv").write_text("t,region,y\n2024-05-30,north,12.5\n2024-05-30,south,nan\n2024-05-30,east,inf\n")
    refused = cli(root, "feedback", "actuals.csv", check=4)
    said = " ".join((refused.stdout + refused.stderr).split())  # as the terminal's width wraps it
    assert "2 invalid value(s), nothing stored" in said and "row 3, y: Input should be a finite number" in said, said
    assert not (root / ".cd4ml" / "history" / "tiny.sqlite").exists()


def test_feedback_killed_mid_write_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    root = _history_project(tmp_path / "p")
    (root / "actuals.csv").write_text("t,region,y\n2024-05-30,north,12.5\n2024-05-30,south,7\n")
    killed = cli(root, "feedback", "actuals.csv", env={"CD4ML_CRASH_AT": "history.before_commit"}, process=True)
    assert killed.returncode == -9, killed.stderr
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM history").fetchone() == (0,)
    cli(root, "feedback", "actuals.csv", check=0)  # sent again: stored once
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM history").fetchone() == (2,)


# -- actuals by request id -----------------------------------------------------------------------------------

def _store(root: Path) -> HistoryStore:
    return HistoryStore(root / "h.sqlite", ["region"], "t", "y", keep_seconds=60 * 86_400)


def _stored(root: Path) -> list[tuple[str, int, float]]:
    with sqlite3.connect(root / "h.sqlite") as db:
        return db.execute("SELECT series, t, value FROM history ORDER BY series, t").fetchall()


def test_an_actual_by_request_id_waits_for_its_prediction_and_is_stored_once(tmp_path: Path) -> None:
    import datetime as dt

    day = int(np.datetime64("2024-05-30T00:00:00").astype(np.int64))
    by_id = [{"request_id": "r1", "record": 1, "keys": None, "values": {"y": 7.5}},
             {"request_id": "nobody", "record": 0, "keys": None, "values": {"y": 1.0}}]
    early = _store(tmp_path)
    # The actual comes first (another worker's note still queued): it waits, nothing is in the history.
    assert early.add_actuals(by_id) == StoredActuals(0, 2)
    version = early.version()
    assert _stored(tmp_path) == []
    late = _store(tmp_path)  # the worker that served r1 writes its note: the pair is complete
    late.note_served("r1", [{"t": dt.date(2024, 5, 29), "region": "north"}, {"t": dt.date(2024, 5, 30), "region": "south"}])
    late.close()
    assert _stored(tmp_path) == [('["south"]', day, 7.5)]
    assert early.version() != version  # a reader's index of the history is read again
    # Sent again, and for the other record too: stored by the note at once, one row per series and time.
    assert early.add_actuals([{**by_id[0], "values": {"y": 8.0}}, {**by_id[0], "record": 0}]) == StoredActuals(2, 0)
    assert _stored(tmp_path) == [('["north"]', day - 86_400, 7.5), ('["south"]', day, 8.0)]
    # Notes and waits change no history: the index stays.
    version = early.version()
    early.note_served("r2", [{"t": dt.date(2024, 5, 31), "region": "north"}])
    early.close()
    assert early.version() == version
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("SELECT request_id FROM waiting").fetchall() == [("nobody",)]


@pytest.mark.slow
def test_actuals_by_request_id_feed_the_forecasts_not_test_traffic(tmp_path: Path) -> None:
    root = _history_project(tmp_path / "p")
    cli(root, "data", "ingest", check=0)
    cli(root, "run", check=0)
    day1 = [{"t": "2024-05-30", "region": r} for r in REGIONS]
    with Service(root, "--workers", "2") as service:
        service.wait_until("/ready", 200)
        served = service.client.post("/predict", json=day1).json()["request_id"]
        probe = service.client.post("/predict", json=day1, headers={"X-Cd4ml-Traffic": "test"}).json()["request_id"]
        # Test traffic's actuals are logged, never history: the next day stays unforecastable.
        assert service.client.post("/feedback", json=[{"request_id": probe, "record": i, "y": 1.0}
                                                      for i in range(len(day1))]).status_code == 202
        ahead = {"t": "2024-05-31", "region": "north"}
        assert service.client.post("/predict", json=ahead).status_code == 422
        fed = service.client.post("/feedback", json=[{"request_id": served, "record": i, "y": 50.0 + i}
                                                     for i in range(len(day1))])
        assert fed.status_code == 202, fed.text
        # Whichever worker took the actuals, the other's note completes them within a fraction of a second.
        answers = []
        for _ in range(100):
            answers.append(service.client.post("/predict", json=ahead))
            if answers[-1].status_code == 200:
                break
            time.sleep(0.05)
        assert answers[-1].status_code == 200, answers[-1].text
        again = {service.client.post("/predict", json=ahead).json()["prediction"] for _ in range(12)}
        assert again == {answers[-1].json()["prediction"]}
        day2 = service.client.post("/predict", json={"t": "2024-05-31", "region": "south"}).json()["request_id"]
    # `cd4ml feedback` by request id: the service's notes outlive it.
    (root / "actuals.csv").write_text(f"request_id,record,y\n{day2},0,61.0\n{served},0,50.0\n")
    said = cli(root, "feedback", "actuals.csv", check=0).stdout
    assert "(2 into the history store)" in " ".join(said.split()), said
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        got = db.execute("SELECT series, value FROM history WHERE t >= ? ORDER BY t, series",
                         [int(np.datetime64("2024-05-30T00:00:00").astype(np.int64))]).fetchall()
    assert got == [('["east"]', 52.0), ('["north"]', 50.0), ('["south"]', 51.0), ('["south"]', 61.0)]
    # `data refresh` stores them too, from the prediction store's rows with actuals (test traffic left out).
    (root / ".cd4ml" / "history" / "tiny.sqlite").unlink()
    cli(root, "data", "refresh", check=0)
    with sqlite3.connect(root / ".cd4ml" / "history" / "tiny.sqlite") as db:
        assert db.execute("SELECT series, value FROM history ORDER BY t, series").fetchall() == got


# -- covariates ----------------------------------------------------------------------------------------------

def _promo_csv(seed: int = 7) -> str:
    """`_ar_csv`'s regions with promotions: a day on promotion sells 20 more, the day after one 15 fewer."""
    rng = np.random.default_rng(seed)
    rows = ["t,region,promo,y"]
    days = np.datetime64("2024-01-01") + np.arange(DAYS + FUTURE)
    for i, region in enumerate(REGIONS):
        level, x, before = 100.0 + 40 * i, 0.0, 0
        for day in days:
            x = 0.6 * x + rng.normal(0, 6)
            promo = int(rng.random() < 0.3)
            rows.append(f"{day},{region},{promo},{level + x + 20 * promo - 15 * before:.3f}")
            before = promo
    return "\n".join(rows) + "\n"


@pytest.mark.slow
def test_covariate_lags_are_served_from_the_actuals_and_the_records_they_confirm(tmp_path: Path) -> None:
    csv = _promo_csv()
    lines = csv.splitlines()
    cut = str(np.datetime64("2024-01-01") + DAYS)
    root = make_csv_project(
        tmp_path / "p", "\n".join([lines[0]] + [x for x in lines[1:] if x.split(",")[0] < cut]) + "\n",
        {"t": {"type": "date"}, "region": {"type": "str"}, "promo": {"type": "int"}, "y": {"type": "float"}},
        split={"holdout_days": 21},
        features={"categorical": ["region"], "numeric": ["promo"],
                  "history": {"lags": [1, 2], "windows": [{"size": 7}], "columns": ["promo"]}},
        **{"forecast": {"series": ["region"], "frequency": "1D"}, "baseline__group_by": ["region"],
           "acceptance": {"latency_p99_ms": 1000},
           "model__params": {"n_estimators": 80, "learning_rate": 0.1, "min_child_samples": 5, "n_jobs": 1}})
    cli(root, "data", "ingest", check=0)
    out = cli(root, "run", "--json", check=0)
    assert '"passed": true' in out.stdout
    from cd4ml.release.registry import Registry

    project = load_project(root)
    release = Registry.for_project(project).load("1", project.release_cache)
    assert release.spec.history is not None and release.spec.history.names[-2:] == ["promo_lag1", "promo_lag2"]
    everything = pd.read_csv(io.StringIO(csv), parse_dates=["t"])
    future = everything[everything["t"] >= pd.Timestamp(cut)].sort_values(["t", "region"], kind="stable")
    served: list[float] = []
    with Service(root) as service:
        for n, (day, rows) in enumerate(future.groupby("t")):
            records = [{"t": day.date().isoformat(), "region": r, "promo": int(p)}
                       for r, p in zip(rows["region"], rows["promo"])]
            answer = service.client.post("/predict", json=records)
            assert answer.status_code == 200, answer.text
            served += answer.json()["predictions"]
            # Day by day, each way an actual comes: by request id (the record's promo with it), by keys with promo.
            actuals = ([{"request_id": answer.json()["request_id"], "record": i, "y": y} for i, y in enumerate(rows["y"])]
                       if n % 2 == 0 else [{**rec, "y": y} for rec, y in zip(records, rows["y"])])
            assert service.client.post("/feedback", json=actuals).status_code == 202  # one worker: its notes at once
    offline = release.predict({"t": future["t"].to_numpy(), "region": future["region"].to_numpy().astype(str),
                               "promo": future["promo"].to_numpy()},
                              history={c: everything[c].to_numpy() for c in ("t", "region", "y", "promo")})
    np.testing.assert_array_equal(np.array(served), offline)
    without = release.predict({"t": future["t"].to_numpy(), "region": future["region"].to_numpy().astype(str),
                               "promo": future["promo"].to_numpy()},
                              history={c: everything[c].to_numpy() for c in ("t", "region", "y")} | {
                                  "promo": np.full(len(everything), np.nan)})
    assert not np.array_equal(without, offline)  # the covariate's lags are read, not NaN
