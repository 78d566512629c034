"""Deterministic simulator of a subscription business whose customers churn month by month.

The books open on ``start`` with ``n_customers`` active customers of mixed tenure (the business has
run unseen for 36 months before). Every month each active customer has one row; a customer whose
``churned`` is true leaves at the end of that month and as many new customers sign up, appearing
from the next month with tenure 0, so the population stays at ``n_customers``. The true probability
that customer ``c`` churns in month ``m``::

    logit p = INTERCEPT + plan[c] + region[c] + payment[c] + frailty[c]    # frailty: unobserved, N(0, 0.6)
              - 0.45 * log1p(tenure_months)                               # loyalty grows with tenure
              + 0.30 * support_tickets - 0.8 * log(usage_hours / plan median usage)
              + 0.9 * price_changed_recently + 1.0 * log(price / price before the rise)

A price rise (``price_rise``, the regime change) raises every plan's list price by 20% from that month
on. A customer who signed up before it pays more from then on and has ``price_changed_recently`` for
three months, with more support tickets; customers who sign up later pay the new price from the start.

Each month's draws come from a generator seeded from (seed, month), the first customers' from
(seed, a constant tag), so a longer range repeats a shorter one's months exactly and a price rise
changes nothing before its month. Probabilities and ticket rates are rounded (6 and 4 decimals)
before drawing, so last-bit differences of ``exp`` and ``log`` between CPUs do not leak into the
output.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.examples.draws import keyed_rng, option_timestamp

PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west")
PAYMENT_METHODS = ("card", "direct_debit", "paypal", "invoice")

_PLAN_SHARE = np.array([0.5, 0.35, 0.15])
_PLAN_PRICE = np.array([9.99, 14.99, 24.99])  # monthly fee before any discount or rise
_PLAN_USAGE = np.array([8.0, 15.0, 30.0])  # median monthly usage hours
_PLAN_LOGIT = np.array([0.25, 0.0, -0.3])
_REGION_SHARE = np.array([0.3, 0.25, 0.25, 0.2])
_REGION_LOGIT = np.array([0.0, 0.15, -0.1, 0.1])
_PAYMENT_SHARE = np.array([0.45, 0.3, 0.15, 0.1])
_PAYMENT_LOGIT = np.array([0.0, -0.35, 0.1, 0.3])  # a direct debit is rarely cancelled on a whim
_DISCOUNTS = np.array([0.0, 0.1, 0.25])
_DISCOUNT_SHARE = np.array([0.7, 0.2, 0.1])

_INTERCEPT = -1.5
_TENURE, _TICKETS, _USAGE, _RECENT, _RAISED = -0.45, 0.30, -0.8, 0.9, 1.0
_FRAILTY_SD = 0.6
_USAGE_SD, _MONTH_USAGE_SD = 0.5, 0.35  # log-normal spread between customers, and month to month
_RISE = 1.2  # list prices after the rise
_RECENT_MONTHS = 3  # how long a price change counts as recent
_OPENING_TENURE = 20.0  # mean tenure (months) of the first customers
# Months simulated before the books open, so the customers of the first rows are those a real business
# would have: the frail ones of the first generation have mostly left.
_WARM_UP = 36

# Tags keep the seed sequences of different purposes apart.
_FIRST_CUSTOMERS_TAG, _MONTH_TAG = 1, 2
_NEVER = 10**9  # a month after every month



def _month(value: Any, name: str) -> int:
    """Months since year 0 of the month holding ``value`` (anything ``pd.Timestamp`` parses)."""
    stamp = option_timestamp(value, name)
    return stamp.year * 12 + stamp.month - 1


def _first_day(month: int) -> np.datetime64:
    return np.datetime64(datetime.date(month // 12, month % 12 + 1, 1), "us")


@dataclasses.dataclass
class _Customers:
    """The active customers' static attributes, one array element per customer, in customer_id order."""

    customer_id: np.ndarray
    signup: np.ndarray  # month of the first row (tenure 0)
    plan: np.ndarray  # positions in PLANS, REGIONS, PAYMENT_METHODS, _DISCOUNTS
    region: np.ndarray
    payment: np.ndarray
    discount: np.ndarray
    usage: np.ndarray  # the customer's typical monthly hours
    tickets: np.ndarray  # the customer's typical support tickets per month
    frailty: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, first_id: int, signup: np.ndarray) -> _Customers:
        n = len(signup)
        plan = rng.choice(len(PLANS), size=n, p=_PLAN_SHARE)
        return cls(
            customer_id=np.arange(first_id, first_id + n, dtype=np.int64),
            signup=signup.astype(np.int64),
            plan=plan,
            region=rng.choice(len(REGIONS), size=n, p=_REGION_SHARE),
            payment=rng.choice(len(PAYMENT_METHODS), size=n, p=_PAYMENT_SHARE),
            discount=rng.choice(len(_DISCOUNTS), size=n, p=_DISCOUNT_SHARE),
            usage=_PLAN_USAGE[plan] * rng.lognormal(0.0, _USAGE_SD, size=n),
            tickets=rng.gamma(2.0, 0.2, size=n),  # mean 0.4 a month; a few customers need help often
            frailty=rng.normal(0.0, _FRAILTY_SD, size=n),
        )

    def keep(self, mask: np.ndarray) -> _Customers:
        return _Customers(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})

    def join(self, other: _Customers) -> _Customers:
        return _Customers(**{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                             for f in dataclasses.fields(self)})


class ChurnWorld:
    """A deterministic subscription business; :meth:`history` gives its monthly customer rows.

    ``start``: the month the books open (any date in it); ``price_rise``: the month list prices rise
    by 20% (any date in it), or None for none. ``seed`` must be a non-negative integer.
    """

    def __init__(
        self,
        n_customers: int = 3000,
        start: datetime.date | str = "2023-01-01",
        seed: int = 42,
        price_rise: datetime.date | str | None = None,
    ) -> None:
        for name, value in (("n_customers", n_customers), ("seed", seed)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if n_customers < 1:
            raise ValueError(f"n_customers must be >= 1, got {n_customers}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self._n = int(n_customers)
        self._seed = int(seed)
        self._start = _month(start, "start")
        # No rise: one that never comes, so every month is before it.
        self._rise = _NEVER if price_rise is None else _month(price_rise, "price_rise")

    def _first_customers(self, month: int) -> _Customers:
        rng = keyed_rng(_FIRST_CUSTOMERS_TAG, self._seed)
        tenure = np.minimum(np.floor(rng.exponential(_OPENING_TENURE, size=self._n)), 120)
        return _Customers.draw(rng, 1, month - tenure.astype(np.int64))

    def _month_rows(self, month: int, active: _Customers,
                    rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The rows of ``month`` (column -> array, one element per active customer) and who churns."""
        n = len(active.customer_id)
        tenure = month - active.signup
        risen = month >= self._rise
        raised = (active.signup < self._rise) & risen  # pays more than when signing up
        recent = raised & (month < self._rise + _RECENT_MONTHS)
        price = np.round(_PLAN_PRICE[active.plan] * (1.0 - _DISCOUNTS[active.discount]) * (_RISE if risen else 1.0), 2)
        usage = np.round(active.usage * rng.lognormal(0.0, _MONTH_USAGE_SD, size=n), 1)
        # Onboarding and a price change both bring questions to support.
        tickets = rng.poisson(np.round(active.tickets * np.where(tenure < 2, 1.5, 1.0) * np.where(recent, 1.6, 1.0), 4))
        logit = (_INTERCEPT + _PLAN_LOGIT[active.plan] + _REGION_LOGIT[active.region]
                 + _PAYMENT_LOGIT[active.payment] + active.frailty
                 + _TENURE * np.log1p(tenure) + _TICKETS * tickets
                 + _USAGE * np.log(np.maximum(usage, 0.1) / _PLAN_USAGE[active.plan])
                 + _RECENT * recent + _RAISED * np.log(_RISE) * raised)
        probability = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
        churned = rng.random(n) < probability
        rows = {
            "customer_id": active.customer_id,
            "plan": active.plan,
            "region": active.region,
            "payment_method": active.payment,
            "tenure_months": tenure.astype(np.int64),
            "usage_hours": usage,
            "support_tickets": tickets.astype(np.int64),
            "price": price,
            "price_changed_recently": recent,
            "churned": churned,
            "churn_probability": probability,
        }
        return rows, churned

    def _simulate(self, last: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(month, rows) from the warm-up's first month to ``last``."""
        first = self._start - _WARM_UP
        active = self._first_customers(first)
        next_id = self._n + 1
        for month in range(first, last + 1):
            rng = keyed_rng(_MONTH_TAG, self._seed, month)
            rows, churned = self._month_rows(month, active, rng)
            yield month, rows
            # Drawn after the month's rows, from the same generator: joiners appear next month.
            joiners = _Customers.draw(rng, next_id, np.full(int(churned.sum()), month + 1))
            next_id += len(joiners.customer_id)
            active = active.keep(~churned).join(joiners)

    def _range(self, start: Any, end: Any) -> tuple[int, int]:
        first, last = _month(start, "start"), _month(end, "end")
        if last < first:
            raise ValueError(f"end ({end}) must not be in a month before start ({start})")
        if first < self._start:
            raise ValueError(f"start ({start}) is before the month the books open ({_first_day(self._start)})")
        return first, last

    def history(self, start: datetime.date | str, end: datetime.date | str) -> pd.DataFrame:
        """One row per active customer per month, the months of ``start`` to ``end`` (both inclusive),
        sorted by month and customer_id.

        Columns: ``month`` datetime64[us] (the first of the month); ``customer_id``, ``tenure_months``
        (0 in the month of signup), ``support_tickets`` int64; ``plan`` (PLANS), ``region`` (REGIONS),
        ``payment_method`` (PAYMENT_METHODS) str; ``usage_hours`` (1 decimal), ``price`` (the monthly
        fee, cents) float64; ``price_changed_recently`` bool; ``churned`` bool (leaves at the end of
        the month); ``churn_probability`` float64, the true probability ``churned`` was drawn with.
        """
        first, last = self._range(start, end)
        parts = [(month, rows) for month, rows in self._simulate(last) if month >= first]
        return self._frame(parts)

    def months(self, start: datetime.date | str, end: datetime.date | str) -> Iterator[pd.DataFrame]:
        """The rows of :meth:`history`, one DataFrame per month, in month order (index 0..n-1 each)."""
        first, last = self._range(start, end)  # validate now, not at the first next()
        return (self._frame([(month, rows)]) for month, rows in self._simulate(last) if month >= first)

    @staticmethod
    def _frame(parts: list[tuple[int, dict[str, np.ndarray]]]) -> pd.DataFrame:
        def column(name: str) -> np.ndarray:
            return np.concatenate([rows[name] for _, rows in parts])

        names = {"plan": PLANS, "region": REGIONS, "payment_method": PAYMENT_METHODS}
        frame = {name: column(name) for name in parts[0][1]}
        for name, values in names.items():
            frame[name] = pd.array(np.array(values, dtype=object)[frame[name]], dtype="str")
        months = np.repeat([_first_day(month) for month, _ in parts], [len(rows["customer_id"]) for _, rows in parts])
        return pd.DataFrame({"month": months, **frame})
