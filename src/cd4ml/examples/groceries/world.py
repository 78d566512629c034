"""Deterministic simulator of a Favorita-like grocery retailer (Corporación Favorita, Ecuador).

Demand model, in units per day, for store ``s`` and item ``i`` of family ``f`` on day ``d``::

    mu = size[s] * level[f] * popularity[i]                   # static; popularity is log-normal
         * exp(state[s, i, d])                                 # memory: the latent state of the series
         * weekly[f, weekday] * yearly[f, day of year]         # weekends up; smooth December peak
         * trend[f, d] * holiday[f, d] * payday[f, d]          # EC national holidays and their eves;
                                                               # the 15th, month end and the day after
         * shift[f, d] * (lift[f, d] if onpromotion else 1)    # regime changes act on shift and lift
    unit_sales = 0 with probability p_zero[s, i] (stock-out; higher for slow items),
                 else negative binomial with mean mu and shape dispersion[f] (Poisson-gamma)
    expected_sales = (1 - p_zero[s, i]) * mu = E[unit_sales]

Each (store, item) series has memory, as real demand does (a product trends, a store has a bad
month): ``state = ar - var(ar) / 2 + level_shifts``. ``ar`` is an AR(1) on the log scale, day by day
(coefficient 0.95, standard deviation 0.5), written as the sum of its last 180 innovations (weights
0.95^k; the rest weigh less than 1e-4), so a day's state depends only on the 180 days before it.
``level_shifts`` are lasting jumps: about one per series every 1000 days from 2013 on, each normal
with standard deviation 0.2 (less 0.02, so a jump does not raise the mean). Over many series and
days ``exp(state)`` averages 1: the world's sales level is that of the static demand.

A (store, item, day) is on promotion with a probability that depends on the item and the store.
The draws of one (day, store) come from a generator seeded from (seed, day ordinal, store_nbr),
static attributes from generators seeded from (seed, constant tag), so any date range holds
exactly the rows of the same days in any other range, and a new store does not perturb the
others.  mu and p_zero are rounded to 4 decimals before drawing, so last-bit differences of
transcendental functions between CPUs do not leak into the output.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import holidays
import numpy as np
import pandas as pd

from cd4ml.examples.draws import keyed_rng, option_timestamp

# (family, share of the assortment, median units/day of an item in a store of size 1); the shares
# roughly follow Favorita's item counts per family.
_FAMILY_TABLE: tuple[tuple[str, float, float], ...] = (
    ("AUTOMOTIVE", 20, 1.0),
    ("BABY CARE", 2, 0.5),
    ("BEAUTY", 19, 1.0),
    ("BEVERAGES", 613, 8.0),
    ("BOOKS", 2, 0.3),
    ("BREAD/BAKERY", 134, 5.0),
    ("CELEBRATION", 31, 1.0),
    ("CLEANING", 446, 4.0),
    ("DAIRY", 242, 6.0),
    ("DELI", 91, 4.0),
    ("EGGS", 41, 6.0),
    ("FROZEN FOODS", 55, 3.0),
    ("GROCERY I", 1334, 6.0),
    ("GROCERY II", 14, 1.5),
    ("HARDWARE", 4, 0.8),
    ("HOME AND KITCHEN I", 77, 1.5),
    ("HOME AND KITCHEN II", 45, 1.5),
    ("HOME APPLIANCES", 2, 0.5),
    ("HOME CARE", 108, 3.0),
    ("LADIESWEAR", 21, 1.0),
    ("LAWN AND GARDEN", 26, 1.0),
    ("LINGERIE", 20, 1.0),
    ("LIQUOR,WINE,BEER", 73, 3.0),
    ("MAGAZINES", 6, 0.8),
    ("MEATS", 84, 5.0),
    ("PERSONAL CARE", 153, 3.0),
    ("PET SUPPLIES", 14, 1.0),
    ("PLAYERS AND ELECTRONICS", 17, 1.0),
    ("POULTRY", 54, 8.0),
    ("PREPARED FOODS", 26, 4.0),
    ("PRODUCE", 306, 10.0),
    ("SCHOOL AND OFFICE SUPPLIES", 15, 1.0),
    ("SEAFOOD", 8, 2.0),
)
FAMILIES: tuple[str, ...] = tuple(name for name, _, _ in _FAMILY_TABLE)
PERISHABLE_FAMILIES: frozenset[str] = frozenset(
    {"BREAD/BAKERY", "DAIRY", "DELI", "EGGS", "MEATS", "POULTRY", "PRODUCE", "SEAFOOD", "PREPARED FOODS"}
)

# (city, state, weight): like Favorita's, most stores are in Quito and Guayaquil.
_CITIES: tuple[tuple[str, str, float], ...] = (
    ("Quito", "Pichincha", 18),
    ("Guayaquil", "Guayas", 8),
    ("Cuenca", "Azuay", 3),
    ("Santo Domingo", "Santo Domingo de los Tsachilas", 3),
    ("Manta", "Manabi", 2),
    ("Ambato", "Tungurahua", 2),
    ("Machala", "El Oro", 2),
    ("Latacunga", "Cotopaxi", 2),
    ("Loja", "Loja", 1),
    ("Riobamba", "Chimborazo", 1),
    ("Ibarra", "Imbabura", 1),
    ("Babahoyo", "Los Rios", 1),
    ("Esmeraldas", "Esmeraldas", 1),
    ("Salinas", "Santa Elena", 1),
    ("Puyo", "Pastaza", 1),
)
_STORE_TYPES = ("A", "B", "C", "D", "E")
_TYPE_SHARE = np.array([9, 8, 15, 18, 4]) / 54  # Favorita's 54 stores
_TYPE_SIZE = {"A": 1.6, "B": 1.25, "C": 0.85, "D": 1.0, "E": 0.7}
_N_CLUSTERS = 17

_WEEKLY_LOG = np.array([-0.06, -0.10, -0.08, -0.12, -0.02, 0.18, 0.20])  # Mon..Sun, strength 1
_TREND_EPOCH = datetime.date(2013, 1, 1).toordinal()  # trend factor 1 on Favorita's first day
_CHRISTMAS_DOY = 358
_SCHOOL_DOY = 245  # back to school in the Sierra region, early September
_ZERO_FLOOR, _ZERO_SLOW, _ZERO_SCALE = 0.02, 0.35, 1.5  # p_zero = floor + slow * exp(-base / scale)

# Tags keep the seed sequences of different purposes apart.
_STORES_TAG, _ITEMS_TAG, _FAMILIES_TAG, _NEW_STORE_TAG, _DAY_TAG = 1, 2, 3, 4, 5

_MEMORY_TAG, _SHIFT_TAG = 6, 7
_AR_COEF, _AR_SD, _AR_TERMS = 0.95, 0.5, 180  # the log state's AR(1): coefficient, stationary sd, terms summed
# Each term's weight: coef^k times the innovation's sd; the sum's variance is halved out of the state.
_AR_WEIGHTS = _AR_COEF ** np.arange(_AR_TERMS) * _AR_SD * np.sqrt(1.0 - _AR_COEF**2)
_AR_HALF_VAR = float((_AR_WEIGHTS**2).sum() / 2)
_SHIFT_FIRST, _SHIFT_LAST = datetime.date(2013, 1, 1).toordinal(), datetime.date(2040, 12, 31).toordinal()
_SHIFT_EVERY_DAYS, _SHIFT_SD = 1000, 0.2

_KINDS = ("promo_lift", "new_store", "family_shift")
_NEW_STORE_KEYS = ("store_nbr", "city", "state", "type", "cluster")



def _to_date(value: Any, name: str) -> datetime.date:
    return option_timestamp(value, name).date()


@dataclasses.dataclass(frozen=True)
class RegimeChange:
    """A named change of the world from ``start`` (inclusive) onwards.

    ``kind`` and its ``params``:

    - ``"promo_lift"``: ``{"families": [...], "factor": 0.5}``; the promotion uplift
      ``lift - 1`` of those families is multiplied by ``factor`` (> 0), so 0.5 halves what a
      promotion adds and 2 doubles it.
    - ``"new_store"``: ``{"store_nbr": 11, "city": "Quito", "state": "Pichincha", "type": "A",
      "cluster": 3, "size": 1.3}``; a store that sells only from ``start``. ``size`` (optional)
      is its demand relative to a type-D store; by default the mean of its type.
    - ``"family_shift"``: ``{"families": [...], "factor": 1.4}``; baseline demand of those
      families is multiplied by ``factor`` (> 0).

    Several changes compose multiplicatively. ``start`` may be given as anything
    ``pd.Timestamp`` parses; it is stored as a ``datetime.date``, ``params`` as a copy.
    """

    kind: str
    start: datetime.date
    params: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "start", _to_date(self.start, "start"))
        params = dict(self.params)
        if self.kind == "new_store":
            missing = [key for key in _NEW_STORE_KEYS if key not in params]
            if missing:
                raise ValueError(f"params of a new_store change lack {missing}")
            if params["type"] not in _STORE_TYPES:
                raise ValueError(f"params['type'] must be one of {_STORE_TYPES}, got {params['type']!r}")
            if int(params["store_nbr"]) < 1 or float(params.get("size", 1.0)) <= 0:
                raise ValueError(f"params need store_nbr >= 1 and size > 0, got {params}")
        else:
            families = params.get("families")
            if isinstance(families, str) or not families or not set(families) <= set(FAMILIES):
                raise ValueError(f"params['families'] must be a non-empty list of FAMILIES, got {families!r}")
            factor = params.get("factor")
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
                raise ValueError(f"params['factor'] must be a number > 0, got {factor!r}")
            params["families"] = tuple(families)
        object.__setattr__(self, "params", params)


class GroceryWorld:
    """A deterministic grocery chain: static stores and items, and daily sales on demand.

    ``stores`` has one row per store (``store_nbr`` int64, ``city``, ``state``, ``store_type``
    "A".."E", ``cluster`` int64), including stores of ``new_store`` changes, which sell nothing
    before their start. ``items`` has one row per item (``item_nbr`` int64 from 100001,
    ``family``, ``item_class`` int64, ``perishable`` int64 0/1). With ``n_items >= 33`` every
    family has at least one item. ``seed`` must be a non-negative integer.
    """

    def __init__(
        self,
        n_stores: int = 10,
        n_items: int = 100,
        seed: int = 42,
        regime_changes: Sequence[RegimeChange] = (),
    ) -> None:
        for name, value in (("n_stores", n_stores), ("n_items", n_items), ("seed", seed)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if n_stores < 1:
            raise ValueError(f"n_stores must be >= 1, got {n_stores}")
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not all(isinstance(change, RegimeChange) for change in regime_changes):
            raise ValueError("regime_changes must be a sequence of RegimeChange")
        self._seed = int(seed)
        self._changes = tuple(regime_changes)
        self._holidays = holidays.country_holidays("EC")
        self._init_stores(int(n_stores))
        self._init_items(int(n_items))
        self._init_families()
        # Static (store, item) arrays of shape (n_all_stores, n_items).
        level = np.array([lvl for _, _, lvl in _FAMILY_TABLE])[self._item_family]
        self._base = self._store_size[:, None] * (level * self._item_popularity)[None, :]
        self._p_zero = np.round(_ZERO_FLOOR + _ZERO_SLOW * np.exp(-self._base / _ZERO_SCALE), 4)
        self._promo_prob = np.minimum(self._store_promo[:, None] * self._item_promo[None, :], 0.9)
        self._init_level_shifts()

    def _init_level_shifts(self) -> None:
        """Each series' lasting jumps: their days (n_all_stores, n_items, m) ascending, padded with a day
        after every other, and the sums of the first j jumps (..., m + 1), each summed in one order."""
        n_items = len(self._item_family)
        per_store = []
        for nbr in self._store_nbr:  # one generator per store: a new store leaves the others unchanged
            rng = keyed_rng(_SHIFT_TAG, self._seed, int(nbr))
            counts = rng.poisson((_SHIFT_LAST - _SHIFT_FIRST) / _SHIFT_EVERY_DAYS, size=n_items)
            days = [np.sort(rng.integers(_SHIFT_FIRST, _SHIFT_LAST + 1, size=c)) for c in counts]
            sizes = [rng.normal(0.0, _SHIFT_SD, size=c) - _SHIFT_SD**2 / 2 for c in counts]
            per_store.append((days, sizes))
        m = max([len(d) for days, _ in per_store for d in days] + [0])
        self._shift_days = np.full((len(self._store_nbr), n_items, m), np.iinfo(np.int64).max, dtype=np.int64)
        self._shift_sums = np.zeros((len(self._store_nbr), n_items, m + 1))
        for s, (days, sizes) in enumerate(per_store):
            for i, (d, z) in enumerate(zip(days, sizes)):
                self._shift_days[s, i, : len(d)] = d
                self._shift_sums[s, i, 1 : len(z) + 1] = np.cumsum(z)
                self._shift_sums[s, i, len(z) + 1 :] = self._shift_sums[s, i, len(z)]

    def _states(self, days: list[datetime.date]) -> np.ndarray:
        """The log state of every series on each of ``days`` (consecutive), (n_days, n_all_stores, n_items):
        each day's from its own 180 innovations, summed in one order, and the jumps up to it."""
        n_items, first = len(self._item_family), days[0].toordinal()
        ordinals = range(first - _AR_TERMS + 1, days[-1].toordinal() + 1)
        noise = np.empty((len(ordinals), len(self._store_nbr), n_items))
        for a, ordinal in enumerate(ordinals):
            for s, nbr in enumerate(self._store_nbr):
                noise[a, s] = keyed_rng(_MEMORY_TAG, self._seed, ordinal, int(nbr)).standard_normal(n_items)
        n = len(days)
        state = np.zeros((n, len(self._store_nbr), n_items))
        for k, weight in enumerate(_AR_WEIGHTS):  # term k of every day at once: the same order for each day
            state += weight * noise[_AR_TERMS - 1 - k : _AR_TERMS - 1 - k + n]
        state -= _AR_HALF_VAR
        for a, day in enumerate(days):
            jumps = (self._shift_days <= day.toordinal()).sum(axis=2)
            state[a] += np.take_along_axis(self._shift_sums, jumps[..., None], axis=2)[..., 0]
        return state

    def _init_stores(self, n: int) -> None:
        rng = keyed_rng(_STORES_TAG, self._seed)
        city_weight = np.array([w for *_, w in _CITIES], dtype=np.float64)
        city = rng.choice(len(_CITIES), size=n, p=city_weight / city_weight.sum())
        kind = [_STORE_TYPES[k] for k in rng.choice(len(_STORE_TYPES), size=n, p=_TYPE_SHARE)]
        cluster = rng.integers(1, _N_CLUSTERS + 1, size=n)
        size = np.array([_TYPE_SIZE[k] for k in kind]) * rng.lognormal(0.0, 0.2, size=n)
        promo = rng.uniform(0.6, 1.4, size=n)  # how often the store runs promotions
        rows = [
            (i + 1, *_CITIES[city[i]][:2], kind[i], int(cluster[i]), size[i], promo[i], datetime.date.min)
            for i in range(n)
        ]
        for change in self._changes:
            if change.kind != "new_store":
                continue
            p = change.params
            nbr = int(p["store_nbr"])
            if nbr in {row[0] for row in rows}:
                raise ValueError(f"regime_changes: new_store store_nbr {nbr} already exists")
            # Its own generator, so adding a store leaves every other store unchanged.
            promo = keyed_rng(_NEW_STORE_TAG, self._seed, nbr).uniform(0.6, 1.4)
            size = float(p.get("size", _TYPE_SIZE[p["type"]]))
            rows.append((nbr, str(p["city"]), str(p["state"]), p["type"], int(p["cluster"]), size, promo, change.start))
        rows.sort(key=lambda row: row[0])
        nbr, city_, state, store_type, clus, size, promo, opens = zip(*rows)
        self._store_nbr = np.array(nbr, dtype=np.int64)
        self._store_size = np.array(size, dtype=np.float64)
        self._store_promo = np.array(promo, dtype=np.float64)
        self._store_opens = np.array([d.toordinal() for d in opens], dtype=np.int64)
        # Private columns, so that editing the public frame cannot change the simulation.
        self._store_cols = {
            "store_nbr": self._store_nbr,
            "city": pd.array(city_, dtype="str"),
            "state": pd.array(state, dtype="str"),
            "store_type": pd.array(store_type, dtype="str"),
            "cluster": np.array(clus, dtype=np.int64),
        }
        self.stores = pd.DataFrame({name: values.copy() for name, values in self._store_cols.items()})

    def _init_items(self, n: int) -> None:
        rng = keyed_rng(_ITEMS_TAG, self._seed)
        n_fam = len(FAMILIES)
        share = np.array([w for _, w, _ in _FAMILY_TABLE], dtype=np.float64)
        share /= share.sum()
        if n >= n_fam:
            family = rng.permutation(np.concatenate([np.arange(n_fam), rng.choice(n_fam, size=n - n_fam, p=share)]))
        else:
            family = rng.choice(n_fam, size=n, p=share)
        self._item_family = family.astype(np.int64)
        self._item_popularity = rng.lognormal(0.0, 1.0, size=n)
        # Beta(0.6, 9): mean ~6% of days, but a few items are on promotion much more often.
        self._item_promo = rng.beta(0.6, 9.0, size=n)
        names = np.array(FAMILIES, dtype=object)[family]
        self._item_cols = {
            "item_nbr": np.arange(100_001, 100_001 + n, dtype=np.int64),
            "family": pd.array(names, dtype="str"),
            "item_class": (1000 + 100 * family + rng.integers(1, 10, size=n)).astype(np.int64),
            "perishable": np.array([name in PERISHABLE_FAMILIES for name in names], dtype=np.int64),
        }
        self.items = pd.DataFrame({name: values.copy() for name, values in self._item_cols.items()})

    def _init_families(self) -> None:
        rng = keyed_rng(_FAMILIES_TAG, self._seed)
        n_fam = len(FAMILIES)
        self._weekly_strength = rng.uniform(0.5, 1.5, n_fam)
        self._yearly_amplitude = rng.uniform(0.04, 0.15, n_fam)
        self._yearly_peak = np.full(n_fam, _CHRISTMAS_DOY, dtype=np.float64)
        school = FAMILIES.index("SCHOOL AND OFFICE SUPPLIES")
        self._yearly_peak[school], self._yearly_amplitude[school] = _SCHOOL_DOY, 0.5
        self._trend = rng.uniform(-0.01, 0.06, n_fam)  # relative change per year
        self._holiday_lift = rng.uniform(1.05, 1.5, n_fam)
        self._payday_lift = rng.uniform(1.04, 1.2, n_fam)
        self._lift = rng.uniform(1.2, 2.5, n_fam)
        self._dispersion = rng.uniform(4.0, 12.0, n_fam)  # negative binomial shape; smaller = noisier
        self._family_changes = [
            (c.kind, c.start, np.isin(FAMILIES, c.params["families"]), float(c.params["factor"]))
            for c in self._changes
            if c.kind != "new_store"
        ]

    def _family_factors(self, day: datetime.date) -> tuple[np.ndarray, np.ndarray]:
        """Demand multiplier and promotion lift of each family on ``day``; two arrays of shape (33,)."""
        log_factor = self._weekly_strength * _WEEKLY_LOG[day.weekday()]
        day_of_year = day.timetuple().tm_yday
        log_factor += self._yearly_amplitude * np.cos(2 * np.pi * (day_of_year - self._yearly_peak) / 365.25)
        years = (day.toordinal() - _TREND_EPOCH) / 365.25
        # The floor keeps far-past dates of a falling family positive.
        factor = np.exp(log_factor) * np.maximum(0.1, 1.0 + self._trend * years)
        if day in self._holidays:
            factor *= self._holiday_lift
        elif day + datetime.timedelta(days=1) in self._holidays:
            factor *= 1.0 + 0.5 * (self._holiday_lift - 1.0)
        if day.day == 15 or (day + datetime.timedelta(days=1)).day == 1:
            factor *= self._payday_lift
        elif day.day in (1, 16):
            factor *= 1.0 + 0.5 * (self._payday_lift - 1.0)
        uplift = self._lift - 1.0
        for kind, start, families, change in self._family_changes:
            if start <= day:
                if kind == "family_shift":
                    factor = np.where(families, factor * change, factor)
                else:
                    uplift = np.where(families, uplift * change, uplift)
        return factor, 1.0 + uplift

    def _simulate_day(self, day: datetime.date, state: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Positions of the stores open on ``day`` (n_open,) and their onpromotion (int64),
        unit_sales and expected_sales (float64), each of shape (n_open, n_items). ``state``: every
        series' log state that day (n_all_stores, n_items)."""
        ordinal = day.toordinal()
        stores = np.flatnonzero(self._store_opens <= ordinal)
        factor, lift = self._family_factors(day)
        shape = self._dispersion[self._item_family]
        rngs = [keyed_rng(_DAY_TAG, self._seed, ordinal, int(self._store_nbr[s])) for s in stores]
        uniform = np.stack([rng.random((2, len(shape))) for rng in rngs])  # promotion, stock-out
        gamma = np.stack([rng.standard_gamma(shape) for rng in rngs])
        promo = uniform[:, 0] < self._promo_prob[stores]
        lift_on = np.where(promo, lift[self._item_family], 1.0)
        mu = np.round(self._base[stores] * np.exp(state[stores]) * factor[self._item_family] * lift_on, 4)
        p_zero = self._p_zero[stores]
        expected = np.round((1.0 - p_zero) * mu, 4)
        rate = gamma * (mu / shape)
        units = np.stack([rng.poisson(lam) for rng, lam in zip(rngs, rate)])
        units = np.where(uniform[:, 1] < p_zero, 0, units).astype(np.float64)
        return stores, promo.astype(np.int64), units, expected

    def _frame(self, days: list[datetime.date]) -> pd.DataFrame:
        """The sales rows of ``days`` (ascending) as one DataFrame; see :meth:`sales`."""
        states = self._states(days)
        parts = [(day, *self._simulate_day(day, state)) for day, state in zip(days, states)]
        n_items = len(self._item_family)
        store_pos = np.concatenate([np.repeat(stores, n_items) for _, stores, *_ in parts])
        item_pos = np.tile(np.arange(n_items), len(store_pos) // n_items)
        dates = np.array([np.datetime64(day, "us") for day, *_ in parts])
        rows_per_day = [len(stores) * n_items for _, stores, *_ in parts]
        item_cols = {name: values.take(item_pos) for name, values in self._item_cols.items()}
        store_cols = {name: values.take(store_pos) for name, values in self._store_cols.items()}
        return pd.DataFrame(
            {
                "date": np.repeat(dates, rows_per_day),
                "store_nbr": store_cols.pop("store_nbr"),
                "item_nbr": item_cols.pop("item_nbr"),
                **item_cols,  # family, item_class, perishable
                **store_cols,  # city, state, store_type, cluster
                "onpromotion": np.concatenate([part[2].ravel() for part in parts]),
                "unit_sales": np.concatenate([part[3].ravel() for part in parts]),
                "expected_sales": np.concatenate([part[4].ravel() for part in parts]),
            }
        )

    def _date_range(self, start: Any, end: Any) -> list[datetime.date]:
        first, last = _to_date(start, "start"), _to_date(end, "end")
        if last < first:
            raise ValueError(f"end ({last}) must not be before start ({first})")
        return [first + datetime.timedelta(days=k) for k in range((last - first).days + 1)]

    def sales(self, start: datetime.date | str, end: datetime.date | str) -> pd.DataFrame:
        """Daily sales from ``start`` to ``end`` (both inclusive).

        One row per (date, store open that day, item), sorted by date, store_nbr, item_nbr.
        Columns: ``date`` datetime64[us] at midnight; ``store_nbr``, ``item_nbr``,
        ``item_class``, ``perishable``, ``cluster``, ``onpromotion`` (0/1) int64; ``family``,
        ``city``, ``state``, ``store_type`` str; ``unit_sales`` float64 (whole units, >= 0);
        ``expected_sales`` float64, E[unit_sales] given everything known that day, rounded to
        4 decimals.
        """
        return self._frame(self._date_range(start, end))

    def days(self, start: datetime.date | str, end: datetime.date | str) -> Iterator[pd.DataFrame]:
        """The rows of :meth:`sales`, one DataFrame per day, in date order (index 0..n-1 each)."""
        dates = self._date_range(start, end)  # validate now, not at the first next()
        return (self._frame([day]) for day in dates)
