"""What a demo example brings to the story (`story.py` plays it): its template, its commits, its world.

`groceries.py` and `churn.py` each define one `DemoExample`; the driver knows nothing of sales or
subscribers beyond what these fields say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Commit:
    """A change to cd4ml.yaml (dotted keys) committed with `message`."""

    message: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class FeatureBug:
    """A plausible bug in the template's features.py that its own tests catch."""

    old: str  # text in features.py
    new: str  # what the bug makes of it
    message: str  # the commit
    caught_by: str  # the failing test's name, shown by the test run
    undone: str  # said after the revert


@dataclass(frozen=True)
class Production:
    """The world after the training data: its rows, period by period, with one regime change."""

    announcement: str  # what changes and when, said before the first period
    periods: tuple[tuple[pd.DataFrame, ...], ...]  # each period's batches (days of a week, a month)


@dataclass(frozen=True)
class DemoExample:
    name: str
    template: str  # `cd4ml init` template
    folder: str  # the project folder in the scratch directory
    data_note: str  # what the first ingest loaded
    first_model: Commit  # few features: the first release
    better: Commit  # the template's full feature set
    capacity: Commit  # more trees
    harmful: Commit  # the gate must reject it
    reverted: str  # said after `git revert` of the harmful commit
    bug: FeatureBug
    probe: Mapping[str, Any]  # the record the clients of scenarios 1-5 ask for (as test traffic)
    shown_metrics: tuple[str, ...]  # the task's primary metric first; the live checks compare each
    batch_noun: str  # what one scored row is: "forecasts", "customers scored"
    period: str  # "week", "month"
    periods_title: str  # chapter 6's title after "In the wild: "
    retrain_split: Commit  # gate on the latest period once production data arrives
    actual_columns: tuple[str, ...]  # the actuals a client sends back: keys, target, whatever else it knows
    actuals_source: str  # where the file of actuals comes from
    change_period: int  # index of the period the regime changes in
    flagged: tuple[str, ...]  # monitoring must flag one of these in that period
    change_event: str  # "the week store 11 opened"
    recovers_on: str  # a shown metric live accuracy recovers on after retraining (AUC ranks a month's
    # customers and need not; logloss sees the stale model's churn rate)
    production: Callable[[Mapping[str, Any]], Production]  # from the project's source options
    answer_unit: str = ""  # a regression answer's unit

    @property
    def metric(self) -> str:
        return self.shown_metrics[0]


@dataclass(frozen=True)
class Scored:
    """One batch of production rows the demo's client scored over HTTP and then scored itself."""

    date: str  # the day the monitor keys its accuracy rows by
    period: int  # index of the period
    rows: int
    fallback: int  # rows answered with categories never seen in training
    versions: tuple[str, ...]
    metrics: Mapping[str, float]  # the client's own computation, with cd4ml's metric functions
    predicted_total: float  # forecast units; expected positives
    actual_total: float
    sample: tuple[tuple[float, ...], tuple[float, ...]] | None  # a regression's (actual, forecast), for a plot


def template_features(template: str) -> dict[str, Any]:
    """A scaffold template's full feature set, as dotted settings."""
    import yaml

    from cd4ml.scaffold import TEMPLATES

    features = yaml.safe_load((TEMPLATES / template / "cd4ml.yaml").read_text())["features"]
    return {f"features.{k}": v for k, v in features.items()}
