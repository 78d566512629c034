"""Tests of the simulated subscription business (the churn example's data source)."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cd4ml.data.sources import BUILTIN_GENERATORS
from cd4ml.errors import ConfigError
from cd4ml.examples.churn import PAYMENT_METHODS, PLANS, REGIONS, ChurnWorld
from cd4ml.scaffold import init_project

COLUMNS = {
    "month": "datetime64[us]",
    "customer_id": "int64",
    "plan": "str",
    "region": "str",
    "payment_method": "str",
    "tenure_months": "int64",
    "usage_hours": "float64",
    "support_tickets": "int64",
    "price": "float64",
    "price_changed_recently": "bool",
    "churned": "bool",
    "churn_probability": "float64",
}
KEYS = ["month", "customer_id"]
RISE = "2024-10-01"


@pytest.fixture(scope="module")
def default_history() -> pd.DataFrame:
    """The template's world: 3000 customers over 24 months, no price rise."""
    return ChurnWorld().history("2023-01-01", "2024-12-01")


@pytest.fixture(scope="module")
def risen_history() -> pd.DataFrame:
    return ChurnWorld(price_rise=RISE).history("2023-01-01", "2024-12-01")


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer)
    return buffer.getvalue()


def test_default_world_size_speed_and_determinism(default_history: pd.DataFrame) -> None:
    assert len(default_history) == 3000 * 24  # as many join each month as left the month before
    began = time.perf_counter()
    again = ChurnWorld().history("2023-01-01", "2024-12-01")
    assert time.perf_counter() - began < 2.0
    pd.testing.assert_frame_equal(default_history, again)
    np.testing.assert_array_equal(pd.util.hash_pandas_object(default_history).to_numpy(),
                                  pd.util.hash_pandas_object(again).to_numpy())
    assert parquet_bytes(default_history) == parquet_bytes(again)
    other = ChurnWorld(seed=43).history("2023-01-01", "2024-12-01")
    assert not other["churn_probability"].equals(default_history["churn_probability"])


def test_golden_values() -> None:
    # Pins the output for this environment; a failure after upgrading numpy means its random streams
    # changed, so old data can no longer be regenerated.
    df = ChurnWorld(n_customers=40, seed=1).history("2023-01-01", "2023-03-01")
    assert len(df) == 120
    first = df.iloc[0]
    assert (first["customer_id"], first["plan"], first["region"], first["payment_method"]) == \
           (3, "standard", "south", "direct_debit")
    assert (first["tenure_months"], first["usage_hours"], first["support_tickets"], first["price"]) == \
           (72, 26.1, 1, 14.99)
    assert first["churn_probability"] == 0.039954
    churned = df[df["churned"]]
    assert churned["customer_id"].head(3).tolist() == [105, 163, 166]
    assert churned["churn_probability"].head(3).tolist() == [0.113875, 0.148746, 0.305671]
    digest = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    assert digest == "bbbc1b5e5700b9650a23728f747bdd024e5b0f4f03cc15f794801b8a9b1f1230"


def test_schema_and_invariants(default_history: pd.DataFrame) -> None:
    df = default_history
    assert {col: str(dtype) for col, dtype in df.dtypes.items()} == COLUMNS
    assert list(df.columns) == list(COLUMNS)
    assert not df.isna().any().any()
    assert df.equals(df.sort_values(KEYS, ignore_index=True))
    assert not df.duplicated(KEYS).any()
    assert (df["month"].dt.day == 1).all() and (df["month"] == df["month"].dt.normalize()).all()
    assert df["month"].nunique() == 24
    assert set(df["plan"]) == set(PLANS) and set(df["region"]) == set(REGIONS)
    assert set(df["payment_method"]) == set(PAYMENT_METHODS)
    assert (df["tenure_months"] >= 0).all() and (df["support_tickets"] >= 0).all()
    assert (df["usage_hours"] >= 0).all() and (df["usage_hours"] == df["usage_hours"].round(1)).all()
    assert (df["price"] > 0).all() and (df["price"] == df["price"].round(2)).all()
    assert df["churn_probability"].between(0, 1, inclusive="neither").all()
    assert not df["price_changed_recently"].any()  # no rise in this world
    # Each plan has its own fee, some customers with a discount.
    assert df.groupby("plan")["price"].max().to_dict() == {"basic": 9.99, "standard": 14.99, "premium": 24.99}


def test_churned_customers_leave_and_new_ones_join(default_history: pd.DataFrame) -> None:
    df = default_history
    per_customer = df.groupby("customer_id").agg(first=("month", "min"), last=("month", "max"), rows=("month", "size"),
                                                 churns=("churned", "sum"), tenure=("tenure_months", "min"))
    assert per_customer["churns"].max() == 1
    left = per_customer[per_customer["churns"] == 1]
    churn_month = df[df["churned"]].set_index("customer_id")["month"]
    # No row after the month a customer churned in, and none missing before it.
    assert (left["last"] == churn_month.reindex(left.index)).all()
    months = (per_customer["last"].dt.year * 12 + per_customer["last"].dt.month
              - per_customer["first"].dt.year * 12 - per_customer["first"].dt.month + 1)
    assert (per_customer["rows"] == months).all()
    assert (df.groupby("customer_id")["tenure_months"].diff().dropna() == 1).all()
    # Joiners appear the month after the churners they replace, with tenure 0 and new ids.
    joined = per_customer[per_customer["first"] > df["month"].min()]
    assert (joined["tenure"] == 0).all()
    assert joined.index.min() > per_customer[per_customer["first"] == df["month"].min()].index.max()
    churners = df[df["churned"]].groupby("month").size()
    joiners = joined.groupby("first").size()
    np.testing.assert_array_equal(joiners.to_numpy(), churners.to_numpy()[:-1])
    assert (df.groupby("month").size() == 3000).all()


def test_base_rate_and_oracle(default_history: pd.DataFrame) -> None:
    df = default_history
    assert 0.05 < df["churned"].mean() < 0.10
    assert df.groupby("month")["churned"].mean().between(0.04, 0.12).all()
    assert abs(df["churned"].mean() - df["churn_probability"].mean()) < 0.005  # drawn with that probability
    # Each effect the model is meant to find pushes the true probability the documented way.
    p = df["churn_probability"]
    assert p[df["tenure_months"] >= 24].mean() < p[df["tenure_months"] < 3].mean()
    assert p[df["support_tickets"] >= 2].mean() > p[df["support_tickets"] == 0].mean()
    low = df["usage_hours"] < df.groupby("plan")["usage_hours"].transform("median")
    assert p[low].mean() > p[~low].mean()
    assert roc_auc_score(df["churned"], p) > 0.75


def test_group_prior_is_clearly_worse_than_the_oracle(default_history: pd.DataFrame) -> None:
    df = default_history
    holdout = df["month"] >= "2024-10-01"
    prior = df[~holdout].groupby("plan")["churned"].mean()
    last = df[holdout]
    baseline_auc = roc_auc_score(last["churned"], last["plan"].map(prior))
    oracle_auc = roc_auc_score(last["churned"], last["churn_probability"])
    assert oracle_auc > 0.7 and oracle_auc - baseline_auc > 0.1


def test_price_rise_raises_prices_and_churn_from_its_month(default_history: pd.DataFrame,
                                                           risen_history: pd.DataFrame) -> None:
    before = default_history["month"] < RISE
    pd.testing.assert_frame_equal(risen_history[risen_history["month"] < RISE], default_history[before])
    after = risen_history[risen_history["month"] >= RISE]
    rate_before = default_history.loc[before, "churned"].mean()
    assert after["churned"].mean() > 1.5 * rate_before
    assert after["churned"].mean() > 1.5 * default_history.loc[~before, "churned"].mean()
    # Every fee rose 20% (to the cent); the customers it rose for have it as a recent change for 3 months,
    # those who signed up from the rise on pay the new fee from the start.
    month_before = default_history[default_history["month"] == "2024-09-01"].set_index("customer_id")["price"]
    in_rise = after[after["month"] == RISE].set_index("customer_id")["price"]
    stayed = in_rise.index.intersection(month_before.index)
    assert len(stayed) > 2500
    np.testing.assert_allclose(in_rise[stayed], (month_before[stayed] * 1.2).round(2), atol=0.011)
    signup = after["month"].dt.month - after["tenure_months"]  # months of 2024
    assert (after["price_changed_recently"] == (signup < 10)).all()
    assert (signup >= 10).sum() > 100 and after["price_changed_recently"].mean() > 0.8
    joined = after[signup >= 10].groupby("plan")["price"].max().to_dict()
    assert joined == {"basic": 11.99, "standard": 17.99, "premium": 29.99}
    assert after["support_tickets"].mean() > default_history.loc[before, "support_tickets"].mean()


def test_ranges_repeat_each_other() -> None:
    world = ChurnWorld(n_customers=200, seed=5, start="2023-01-15")
    whole = world.history("2023-01-01", "2023-08-31")
    assert whole["month"].min() == pd.Timestamp("2023-01-01") and whole["month"].max() == pd.Timestamp("2023-08-01")
    shorter = world.history("2023-01-01", "2023-05-01")
    pd.testing.assert_frame_equal(whole[whole["month"] <= "2023-05-01"], shorter)
    later = world.history("2023-04-10", "2023-08-01")
    pd.testing.assert_frame_equal(whole[whole["month"] >= "2023-04-01"].reset_index(drop=True), later)
    by_month = pd.concat(list(world.months("2023-01-01", "2023-08-01")), ignore_index=True)
    pd.testing.assert_frame_equal(whole, by_month)


def test_generator_reads_the_template_options(tmp_path) -> None:
    files = init_project(tmp_path / "c", "churn")
    assert sorted(str(f) for f in files) == [".gitignore", "cd4ml.yaml", "features.py", "tests/test_features.py"]
    df = BUILTIN_GENERATORS["churn"]({"n_customers": 100, "seed": 3, "start": "2023-01-01", "end": "2023-06-01",
                                      "price_rise": None})
    pd.testing.assert_frame_equal(df, ChurnWorld(n_customers=100, seed=3).history("2023-01-01", "2023-06-01"))
    with pytest.raises(ConfigError, match="missing option 'end'") as info:
        BUILTIN_GENERATORS["churn"]({"start": "2023-01-01"})
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="n_churners"):
        BUILTIN_GENERATORS["churn"]({"start": "2023-01-01", "end": "2023-02-01", "n_churners": 5})
    with pytest.raises(ConfigError, match="price_rise must be a date"):
        BUILTIN_GENERATORS["churn"]({"start": "2023-01-01", "end": "2023-02-01", "price_rise": "soon"})


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="n_customers"):
        ChurnWorld(n_customers=0)
    with pytest.raises(ValueError, match="n_customers"):
        ChurnWorld(n_customers=True)
    with pytest.raises(ValueError, match="seed"):
        ChurnWorld(seed=-1)
    world = ChurnWorld(n_customers=10, start="2023-03-01")
    with pytest.raises(ValueError, match="end"):
        world.history("2023-05-01", "2023-04-30")
    with pytest.raises(ValueError, match="end"):
        world.months("2023-05-01", "2023-04-30")
    with pytest.raises(ValueError, match="before the month the books open"):
        world.history("2023-02-01", "2023-04-01")
    with pytest.raises(ValueError, match="start must be a date"):
        world.history("not a date", "2023-04-01")
