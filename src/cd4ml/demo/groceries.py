"""The demo on the grocery world (the default): daily unit sales of 10 stores x 100 items."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cd4ml.demo.example import Commit, DemoExample, FeatureBug, Production, template_features

PRODUCTION_WEEKS = 4
# Store 11 opens in week 2: inputs the model never saw, and sales it cannot know.
NEW_STORE = {"store_nbr": 11, "city": "Quito", "state": "Pichincha", "type": "A", "cluster": 3, "size": 1.3}
NEW_STORE_DAY = 8  # production day on which it opens


def _production(options: Mapping[str, Any]) -> Production:
    """Four weeks of days from the Monday after the training data; store 11 opens in the second."""
    from cd4ml.examples.groceries import GroceryWorld, RegimeChange

    options = dict(options)
    end = np.datetime64(str(options.pop("end")), "D")
    options.pop("start")
    # Production starts on the Monday after the training data: a week of it is one calendar window.
    start = end + 1 + (-(end + 1 - np.datetime64("1970-01-05", "D")).astype(int)) % 7
    opens = str(start + NEW_STORE_DAY - 1)
    world = GroceryWorld(**options, regime_changes=[RegimeChange("new_store", opens, NEW_STORE)])
    weeks = tuple(tuple(world.days(str(start + 7 * week), str(start + 7 * week + 6)))
                  for week in range(PRODUCTION_WEEKS))
    return Production(f"store {NEW_STORE['store_nbr']} ({NEW_STORE['city']}) opens on {opens}, in week 2", weeks)


EXAMPLE = DemoExample(
    name="groceries",
    template="groceries",
    folder="shop",
    data_note="table version 0: 10 stores x 100 items x 2 years, validated, in Delta Lake",
    # The first model the team ships: store x item level and weekday only. Later commits add the
    # project's full feature set (promotions, calendar, holidays, paydays) and more trees.
    first_model=Commit("first model: store x item level and weekday", {
        "features.numeric": ["dayofweek"], "features.categorical": ["store_nbr"],
        "features.target_encodings": [["store_nbr", "item_nbr"]], "features.custom": [], "features.holidays": None,
        "features.calendar": ["dayofweek"], "features.history": None, "model.params.n_estimators": 100}),
    better=Commit("features: each series' recent sales, promotions, calendar, holidays, paydays, more encodings",
                  template_features("groceries")),
    capacity=Commit("params: 300 trees", {"model.params.n_estimators": 300}),
    harmful=Commit("params: 5 trees to save time (harmful)", {"model.params.n_estimators": 5}),
    reverted="back to 300 trees",
    bug=FeatureBug("(day == 15)", "(day == 14)", "paydays on the 14th (a bug)",
                   "test_paydays_are_the_15th_and_the_last_day_of_the_month", "paydays back on the 15th"),
    # The day after the training data: with history features, the one day a release forecasts before any
    # actual has come back (scenario 6's first production day; the clients send it as test traffic).
    probe={"date": "2024-12-30", "store_nbr": 3, "item_nbr": 100007, "onpromotion": 1},
    shown_metrics=("nwrmsle",),
    batch_noun="forecasts",
    period="week",
    periods_title=f"{PRODUCTION_WEEKS} weeks of forecasts, actuals, monitoring, retraining",
    retrain_split=Commit("split: gate on the latest week: the team retrains weekly on production data",
                         {"split.holdout_days": 7}),
    # The stores' sales records, with the store's master data (a new store's city is news to the model).
    actual_columns=("date", "store_nbr", "item_nbr", "unit_sales", "expected_sales", "city", "state", "store_type",
                    "cluster"),
    actuals_source="the stores' sales file",
    change_period=1,
    flagged=("store_nbr",),
    change_event=f"the week store {NEW_STORE['store_nbr']} opened",
    recovers_on="nwrmsle",
    production=_production,
    answer_unit="units",
)
