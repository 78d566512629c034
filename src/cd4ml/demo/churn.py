"""The demo on the subscription business: which of 3,000 active customers leave next month."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from cd4ml.demo.example import Commit, DemoExample, FeatureBug, Production, template_features

PRODUCTION_MONTHS = 4
PRICE_RISE_MONTH = 2  # list prices rise by 20% in the second production month


def _production(options: Mapping[str, Any]) -> Production:
    """The months after the training data, from the same business with a price rise in the second."""
    from cd4ml.examples.churn import ChurnWorld

    options = dict(options)
    first = pd.Timestamp(str(options.pop("end"))).to_period("M") + 1
    months = [first + i for i in range(PRODUCTION_MONTHS)]
    rise = months[PRICE_RISE_MONTH - 1].start_time.date()
    options.update(price_rise=str(rise))
    world = ChurnWorld(**{k: options[k] for k in ("n_customers", "start", "seed", "price_rise")})
    frames = world.months(str(months[0].start_time.date()), str(months[-1].start_time.date()))
    return Production(f"list prices rise by 20% on {rise}, in month {PRICE_RISE_MONTH}",
                      tuple((frame,) for frame in frames))


EXAMPLE = DemoExample(
    name="churn",
    template="churn",
    folder="subscriptions",
    data_note="table version 0: 3,000 active customers x 24 months, validated, in Delta Lake",
    first_model=Commit("first model: plan and tenure", {
        "features.custom": [], "features.categorical": ["plan"], "features.numeric": ["tenure_months"],
        "model.params.n_estimators": 100}),
    better=Commit("features: usage, support tickets, price, region, payment method, hours per fee",
                  template_features("churn")),
    capacity=Commit("params: 300 trees", {"model.params.n_estimators": 300}),
    harmful=Commit("params: 2 trees to save time (harmful)", {"model.params.n_estimators": 2}),
    reverted="back to 300 trees",
    bug=FeatureBug("hours / np.maximum(fee, 0.01)", "fee / np.maximum(hours, 0.01)",
                   "hours per fee computed as fee per hour (a bug)", "test_hours_per_fee_is_usage_over_price",
                   "hours per fee again"),
    # A customer of the last training month: the clients of scenarios 1-5 stay out of the production months.
    probe={"month": "2024-12-01", "customer_id": 1, "plan": "basic", "region": "north", "payment_method": "card",
           "tenure_months": 2, "usage_hours": 3.5, "support_tickets": 2, "price": 9.99,
           "price_changed_recently": False},
    shown_metrics=("auc", "logloss"),
    batch_noun="customers scored",
    period="month",
    periods_title=f"{PRODUCTION_MONTHS} months of churn scores, actuals, monitoring, retraining",
    retrain_split=Commit("split: gate on the latest month: the team retrains monthly on production data",
                         {"split.holdout_periods": 1}),
    actual_columns=("month", "customer_id", "churned", "churn_probability"),
    actuals_source="the billing system's cancellations",
    change_period=PRICE_RISE_MONTH - 1,
    flagged=("price", "price_changed_recently"),
    change_event="the month prices rose",
    recovers_on="logloss",
    production=_production,
)
