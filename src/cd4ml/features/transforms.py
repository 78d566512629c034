"""Feature computation on column batches; a copy travels inside every model.

A batch is a mapping of column name -> 1-D numpy array, all of length n (one
request row or a million training rows go through the same code). Text is numpy
unicode, or, in large training batches, shared text (see `shared_text`). This module
imports only numpy and the standard library on purpose: every release packages
its own copy of this file and loads it under a private module name, so an old
release keeps computing features exactly as it was trained, whatever cd4ml
version or project code is installed later.

Steps, in order: attribute lookups (key -> attributes), calendar parts,
holiday flags, the project's custom functions, history features (each row's
series' past values, read from a `SeriesHistory`), target encodings, then the
numeric and categorical columns are assembled into a float64 matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

Batch = dict[str, np.ndarray]
CustomFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]

_SMALL_BATCH = 32
_LARGE_BATCH = 4096  # below this np.unique's sort costs less than the shortcuts around it
_ASSEMBLE_ROWS = 4096


@dataclass(frozen=True)
class Lookup:
    """Attributes looked up by a key column (the key's latest row in training)."""
    key: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    """A rolling window of a series' past values: the `size` steps ending `gap` steps before a row's own."""
    size: int
    stats: tuple[str, ...]  # of WINDOW_STATS
    gap: int


# std: the sample standard deviation (NaN below two values), as pandas' rolling std.
WINDOW_STATS = ("mean", "std", "min", "max")


@dataclass(frozen=True)
class HistorySpec:
    """History features: each row's own series' `target` values some steps back, on the time grid of
    `count` `unit`s (`time_steps`), and the `lags` of other `columns` (covariates). No feature reads a
    value nearer than `horizon` steps."""
    series: tuple[str, ...]
    time: str
    target: str
    count: int
    unit: str
    horizon: int
    lags: tuple[int, ...]
    windows: tuple[Window, ...]
    columns: tuple[str, ...] = ()

    @property
    def values(self) -> tuple[str, ...]:
        """The columns whose past values the features read: the target, then the covariates."""
        return (self.target, *self.columns)

    @property
    def lookback(self) -> int:
        """The most steps back any feature reads."""
        return max([*self.lags, *(w.gap + w.size - 1 for w in self.windows)])

    @property
    def names(self) -> list[str]:
        """The features' column names, in order: the target's lags, each window's stats, each covariate's lags."""
        names = [f"{self.target}_lag{k}" for k in self.lags]
        for w in self.windows:
            suffix = "" if w.gap == self.horizon else f"_gap{w.gap}"
            names += [f"{self.target}_{stat}{w.size}{suffix}" for stat in w.stats]
        return names + [f"{c}_lag{k}" for c in self.columns for k in self.lags]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "HistorySpec":
        return cls(series=tuple(doc["series"]), time=doc["time"], target=doc["target"], count=doc["count"],
                   unit=doc["unit"], horizon=doc["horizon"], lags=tuple(doc["lags"]),
                   windows=tuple(Window(w["size"], tuple(w["stats"]), w["gap"]) for w in doc["windows"]),
                   columns=tuple(doc.get("columns", ())))

    def to_json(self) -> dict[str, Any]:
        return {"series": list(self.series), "time": self.time, "target": self.target, "count": self.count,
                "unit": self.unit, "horizon": self.horizon, "lags": list(self.lags),
                "windows": [{"size": w.size, "stats": list(w.stats), "gap": w.gap} for w in self.windows],
                "columns": list(self.columns)}


@dataclass(frozen=True)
class FeatureSpec:
    """What a FeaturePlan computes, kept in every release as JSON (`to_json`, `from_json`)."""
    time_column: str
    inputs: tuple[str, ...]
    lookups: tuple[Lookup, ...]
    lookup_columns: tuple[str, ...]
    calendar: tuple[str, ...]
    slot_minutes: int | None
    holidays: bool
    custom: tuple[str, ...]
    target_encodings: tuple[tuple[str, ...], ...]
    encoding_smoothing: float
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    target_transform: str | None
    clip_min: float | None
    task: dict[str, Any] | None  # the task's own JSON (cd4ml.task); None in releases made before tasks
    history: HistorySpec | None = None  # its features are listed under `numeric`

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "FeatureSpec":
        """A release's spec; `slot_minutes` and `task` are missing from older releases'."""
        return cls(
            time_column=doc["time_column"], inputs=tuple(doc["inputs"]),
            lookups=tuple(Lookup(lk["key"], tuple(lk["columns"])) for lk in doc["lookups"]),
            lookup_columns=tuple(doc["lookup_columns"]), calendar=tuple(doc["calendar"]),
            slot_minutes=doc.get("slot_minutes"), holidays=bool(doc["holidays"]), custom=tuple(doc["custom"]),
            target_encodings=tuple(tuple(cols) for cols in doc["target_encodings"]),
            encoding_smoothing=doc["encoding_smoothing"], categorical=tuple(doc["categorical"]),
            numeric=tuple(doc["numeric"]), target_transform=doc["target_transform"], clip_min=doc["clip_min"],
            task=doc.get("task"), history=HistorySpec.from_json(doc["history"]) if doc.get("history") else None)

    @classmethod
    def of(cls, spec: "FeatureSpec | Mapping[str, Any]") -> "FeatureSpec":
        """`spec` itself, or read from its JSON (a release passes its plan the JSON it stored: an old
        release's copy of this module takes the dict)."""
        return cls.from_json(spec) if isinstance(spec, Mapping) else spec

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in a release (keys in this order, lists for tuples)."""
        return {
            "time_column": self.time_column, "inputs": list(self.inputs),
            "lookups": [{"key": lk.key, "columns": list(lk.columns)} for lk in self.lookups],
            "lookup_columns": list(self.lookup_columns), "calendar": list(self.calendar),
            "slot_minutes": self.slot_minutes, "holidays": self.holidays, "custom": list(self.custom),
            "target_encodings": [list(cols) for cols in self.target_encodings],
            "encoding_smoothing": self.encoding_smoothing, "categorical": list(self.categorical),
            "numeric": list(self.numeric), "target_transform": self.target_transform, "clip_min": self.clip_min,
            "task": self.task, "history": self.history.to_json() if self.history else None,
        }


def as_time(values: Any) -> np.ndarray:
    """Dates or timestamps (datetime64, ISO strings, pandas), or whole years (ints) -> datetime64[s].

    A year stands for its first moment, 1 January 00:00.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[s]")
    if arr.dtype.kind in "iu":
        return (arr.astype(np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]")
    return np.asarray(arr.astype(str), dtype="datetime64[s]")


def time_steps(times: np.ndarray, count: int, unit: str) -> np.ndarray:
    """Each time's step number on a grid of `count` `unit`s (s, min, h, D, W, MS, YS), int64 (n,):
    times one step apart differ by 1. `times`: datetime64 of any precision, or whole years as ints."""
    if np.issubdtype(times.dtype, np.integer):
        return times.astype(np.int64) // count
    if unit == "MS":
        return times.astype("datetime64[M]").astype(np.int64) // count
    if unit == "YS":
        return times.astype("datetime64[Y]").astype(np.int64) // count
    if unit == "W":  # weeks from Monday: 1970-01-05 was one
        return (times.astype("datetime64[D]").astype(np.int64) - 4) // (7 * count)
    if unit == "D":  # days as they are held, without a pass through seconds
        return times.astype("datetime64[D]", copy=False).astype(np.int64) // count
    seconds = {"s": 1, "min": 60, "h": 3600, "D": 86_400}[unit] * count
    return times.astype("datetime64[s]").astype(np.int64) // seconds


def calendar_part(t: np.ndarray, part: str, slot_minutes: int | None = None) -> np.ndarray:
    """One calendar part of datetime64[s] values, as int64 (dayofweek: Monday=0).

    `minute` is the minute of the hour; `slot` numbers the day's slots of `slot_minutes` from
    midnight (with 30: 00:00-00:29 is 0, 23:30-23:59 is 47).
    """
    return _calendar_part(t, t.astype("datetime64[D]"), part, slot_minutes)


def _dayofweek(days: np.ndarray) -> np.ndarray:
    return (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday


def _calendar_part(t: np.ndarray, days: np.ndarray, part: str, slot_minutes: int | None) -> np.ndarray:
    """`calendar_part` given `days`, t's dates: a request computes them once for all its parts."""
    if part == "dayofweek":
        return _dayofweek(days)
    if part == "year":
        return days.astype("datetime64[Y]").astype(np.int64) + 1970
    if part == "month":
        return days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    if part == "day":
        return (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    if part == "dayofyear":
        return (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    if part == "weekofyear":
        # ISO week: the week belongs to the year of its Thursday.
        thursday = days - _dayofweek(days) + 3
        return (thursday - thursday.astype("datetime64[Y]")).astype(np.int64) // 7 + 1
    if part == "hour":
        return (t - days).astype("timedelta64[h]").astype(np.int64)
    if part == "minute":
        return (t - days).astype("timedelta64[m]").astype(np.int64) % 60
    if part == "slot":
        if not slot_minutes:
            raise ValueError("calendar part 'slot' needs slot_minutes")
        return (t - days).astype("timedelta64[m]").astype(np.int64) // slot_minutes
    if part == "is_weekend":
        return (_dayofweek(days) >= 5).astype(np.int64)
    if part == "is_month_end":
        return ((days + 1).astype("datetime64[M]") != days.astype("datetime64[M]")).astype(np.int64)
    raise ValueError(f"unknown calendar part {part!r}")


def shared_text(distinct: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Text rows as an object array whose n slots point at the k `distinct` strings: 8 bytes a row.

    Fixed-width unicode costs 4 bytes a character of the longest value in every row (120 bytes a row
    for a 30-character name), hundreds of MB per column of a training table. Where a step needs
    the text itself (a vocabulary to store, a custom function), it becomes unicode (`_unicode`).
    """
    return np.asarray(distinct, dtype=object)[codes]


def _unicode(x: np.ndarray) -> np.ndarray:
    """Text as fixed-width unicode: what is stored in a plan and what custom functions are given."""
    return x.astype(str) if x.dtype.kind in "OS" else x


def _normalise(x: np.ndarray) -> np.ndarray:
    """Categorical values: text as unicode (shared text stays shared), numbers as int64/float64."""
    # copy=False: this runs on every key column of every batch; a million-row copy per call adds up.
    x = np.asarray(x)
    kind = x.dtype.kind
    if kind in "UO":
        return x
    if kind == "S":
        return x.astype(str)
    if kind in "biu":
        return x.astype(np.int64, copy=False)
    if kind == "M":
        return x.astype("datetime64[s]", copy=False).astype(np.int64)
    return x.astype(np.float64, copy=False)


def _unique(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(x, return_inverse=True)` for a normalised 1-D `x`: the same values and dtype, and the
    same inverse as int32 while that holds it (a million rows' codes in 4 MB, not 8).

    Training columns hold a million rows but few distinct values; sorting them all (strings above
    all) was most of the cost of fitting. Small integer ranges are counted instead, and text is
    grouped by a hash of its characters, checked against the text itself before it is trusted.
    """
    n = len(x)
    if x.dtype.kind == "O":
        # Shared text (or a custom step's objects): hashed once per row, each distinct object then
        # turned into text once, and objects with the same text (None and "None") merged, as astype(str).
        rows = x.tolist()
        first = {value: i for i, value in enumerate(dict.fromkeys(rows))}
        codes = np.fromiter(map(first.__getitem__, rows), dtype=np.intp, count=n)
        values, merged = np.unique(_unicode(np.array(list(first), dtype=object)), return_inverse=True)
        return values, merged.astype(_index_dtype(len(values)))[codes]
    if n > _LARGE_BATCH and x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if hi - lo <= 2 * n:
            offset = x - lo
            present = np.bincount(offset, minlength=hi - lo + 1) > 0
            rank = (np.cumsum(present) - 1).astype(_index_dtype(int(present.sum())))
            return (np.flatnonzero(present) + lo).astype(x.dtype), rank[offset]
    if n > _LARGE_BATCH and x.dtype.kind == "U" and x.dtype.itemsize:
        x = np.ascontiguousarray(x)
        chars = x.view(np.uint32).reshape(n, -1)
        h = np.zeros(n, dtype=np.uint64)
        for j in range(chars.shape[1]):
            h *= np.uint64(1000003)  # wraps around: a hash, collisions are caught below
            h += chars[:, j]
        _, first, group = np.unique(h, return_index=True, return_inverse=True)
        distinct = x[first]
        if _gathers(distinct, group, x):
            order = np.argsort(distinct)
            rank = np.empty(len(order), dtype=_index_dtype(len(order)))
            rank[order] = np.arange(len(order))
            return distinct[order], rank[group]
    values, inverse = np.unique(x, return_inverse=True)
    return values, inverse.astype(_index_dtype(len(values)), copy=False)


def _index_dtype(k: int) -> type[np.signedinteger[Any]]:
    """The row codes' dtype for k distinct values: int32 while it holds them, half int64's memory."""
    return np.int32 if k < 2**31 else np.int64


def _gathers(values: np.ndarray, idx: np.ndarray, x: np.ndarray) -> bool:
    """Whether `values[idx]` equals `x` everywhere; compared in slices, never copying a million rows of text."""
    step = 1 << 16
    return all(np.array_equal(values[idx[i:i + step]], x[i:i + step]) for i in range(0, len(x), step))


class FeatureSpecError(ValueError):
    """A feature setting names a column that is neither in the data nor derived, or does not fit the task."""

    def __init__(self, key: str, column: str | None = None, reason: str | None = None) -> None:
        self.key = key
        super().__init__(reason or f"column {column!r} is neither in the data nor derived by a feature step")


class Vocabulary:
    """The sorted distinct values of one column; maps values to codes 0..k-1, unknown -> -1."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self._index: dict[Any, int] | None = None

    @classmethod
    def fit(cls, x: np.ndarray) -> "Vocabulary":
        return cls.fit_codes(x)[0]

    @classmethod
    def fit_codes(cls, x: np.ndarray) -> tuple["Vocabulary", np.ndarray]:
        """The vocabulary of `x` and the codes of `x` in it (the values `codes(x)` returns, in `_unique`'s
        dtype), found in one pass."""
        x = _normalise(x)
        values, codes = _unique(x)
        if values.dtype.kind == "f":
            nan = np.isnan(values)
            if nan.any():
                values = values[~nan]
                codes = np.where(codes < len(values), codes, -1)  # np.unique puts NaN last
        return cls(values), codes

    def align(self, x: np.ndarray) -> np.ndarray | None:
        """`x` normalised to compare with the vocabulary's values; None if it never can (text vs numbers)."""
        x = _normalise(x)
        if self.values.dtype.kind == "U" and x.dtype.kind != "U":
            return x.astype(str)
        if self.values.dtype.kind in "if" and x.dtype.kind in "UO":  # objects compare as their text, as text would
            return None
        return x

    def codes(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        x = self.align(x)
        if x is None or len(self.values) == 0:
            return np.full(n, -1, dtype=np.int64)
        if len(x) <= _SMALL_BATCH:
            # A request of a few rows: a dict lookup costs less than the vectorised search's
            # fixed overhead, and gives the same codes (values compare equal the same way).
            if self._index is None:
                self._index = {v: i for i, v in enumerate(self.values.tolist())}
            index = self._index
            return np.array([index.get(v, -1) for v in x.tolist()], dtype=np.int64)
        if len(x) > _LARGE_BATCH and x.dtype.kind in "iu" and self.values.dtype.kind in "iu":
            lo, hi = int(self.values[0]), int(self.values[-1])
            if hi - lo <= 2 * len(x):
                # Integers of a small range: a code per value in one gather, where a search costs log k per row.
                slot = np.full(hi - lo + 1, -1, dtype=np.int64)
                slot[self.values - lo] = np.arange(len(self.values))
                inside = (x >= lo) & (x <= hi)
                return np.where(inside, slot[np.where(inside, x - lo, 0)], -1)
        idx = np.searchsorted(self.values, x)
        idx_c = np.minimum(idx, len(self.values) - 1)
        return np.where(self.values[idx_c] == x, idx_c, -1).astype(np.int64)


class KeyTable:
    """Rows keyed by one or more columns, found by vectorised binary search."""

    def __init__(self, vocabs: list[Vocabulary], keys: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.vocabs = vocabs
        self.keys = keys
        self.values = values
        self._rows: dict[tuple[Any, ...], int] | None = None

    def _row_index(self) -> dict[tuple[Any, ...], int]:
        """{tuple of key values: row}, decoded from the composite keys once, for small batches."""
        if self._rows is None:
            sizes = [len(v.values) + 1 for v in self.vocabs]
            values = [v.values.tolist() for v in self.vocabs]
            rows = {}
            for i, key in enumerate(self.keys.tolist()):
                if key < 0:
                    continue
                parts = []
                for vals, size in zip(reversed(values), reversed(sizes)):
                    key, code = divmod(key, size)
                    parts.append(vals[code])
                rows[tuple(reversed(parts))] = i
            self._rows = rows
        return self._rows

    @staticmethod
    def _composite(vocabs: list[Vocabulary], cols: list[np.ndarray]) -> np.ndarray:
        return KeyTable._combine(vocabs, [v.codes(c) for v, c in zip(vocabs, cols)])

    @staticmethod
    def _combine(vocabs: list[Vocabulary], codes: list[np.ndarray]) -> np.ndarray:
        key = np.zeros(len(codes[0]), dtype=np.int64)
        unknown = np.zeros(len(codes[0]), dtype=bool)
        for vocab, c in zip(vocabs, codes):  # in place: a million-row temporary fewer per column
            key *= len(vocab.values) + 1
            key += c
            unknown |= c < 0
        key[unknown] = -1
        return key

    @classmethod
    def group(cls, cols: list[np.ndarray]) -> tuple["KeyTable", np.ndarray]:
        """Distinct key combinations of `cols`; also returns each row's group index."""
        return cls.group_codes([Vocabulary.fit_codes(c) for c in cols])

    @classmethod
    def group_codes(cls, fitted: list[tuple[Vocabulary, np.ndarray]]) -> tuple["KeyTable", np.ndarray]:
        """`group` of columns whose vocabularies and codes are already known (`Vocabulary.fit_codes`)."""
        vocabs = [v for v, _ in fitted]
        size = np.prod([float(len(v.values) + 1) for v in vocabs])
        if size > 2**62:
            raise ValueError("too many distinct key combinations to index")
        keys, inverse = _unique(cls._combine(vocabs, [c for _, c in fitted]))
        return cls(vocabs, keys, {}), inverse

    def find(self, cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Row index into the table for each input row, and whether it was found."""
        n = len(cols[0])
        if n <= _SMALL_BATCH:
            values = []
            for vocab, col in zip(self.vocabs, cols):
                aligned = vocab.align(col)
                if aligned is None:
                    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
                values.append(aligned.tolist())
            rows = self._row_index()
            found_rows = [rows.get(key, -1) for key in zip(*values)]
            idx = np.array(found_rows, dtype=np.int64)
            found = idx >= 0
            if -1 in found_rows:
                idx[~found] = 0
            return idx, found
        composite = self._composite(self.vocabs, cols)
        if len(self.keys) == 0:
            return np.zeros(len(composite), dtype=np.int64), np.zeros(len(composite), dtype=bool)
        idx = np.minimum(np.searchsorted(self.keys, composite), len(self.keys) - 1)
        return idx, (self.keys[idx] == composite) & (composite >= 0)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.keys": self.keys}
        out.update({f"{prefix}.vocab{i}": v.values for i, v in enumerate(self.vocabs)})
        out.update({f"{prefix}.value.{name}": arr for name, arr in self.values.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str, n_keys: int,
                    value_names: list[str]) -> "KeyTable":
        vocabs = [Vocabulary(arrays[f"{prefix}.vocab{i}"]) for i in range(n_keys)]
        values = {name: arrays[f"{prefix}.value.{name}"] for name in value_names}
        return cls(vocabs, arrays[f"{prefix}.keys"], values)


def _in_sorted(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Membership of each x in a sorted array (np.isin sorts both sides on every call)."""
    if len(sorted_values) == 0:
        return np.zeros(len(x), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_values, x), len(sorted_values) - 1)
    return sorted_values[idx] == x


class _UnicodeText(MutableMapping[str, np.ndarray]):
    """A batch as custom feature functions see it: shared text columns as unicode, converted when read.

    A training batch and a request give a project's function the same dtypes, so it computes the
    same features in both; only the columns it reads are converted. What it writes stays here.
    """

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._read: Batch = {}
        self._deleted: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._read:
            if name in self._deleted:
                raise KeyError(name)
            self._read[name] = _unicode(self._batch[name])
        return self._read[name]

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self._read[name] = values

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._read.pop(name, None)
        self._deleted.add(name)

    def __iter__(self) -> Iterator[str]:
        names = {**dict.fromkeys(self._batch), **dict.fromkeys(self._read)}
        return iter([n for n in names if n in self._read or n not in self._deleted])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _missing_like(values: np.ndarray, n: int) -> np.ndarray:
    if values.dtype.kind == "U":
        return np.full(n, "", dtype=values.dtype)
    return np.full(n, np.nan)


# Training rows are dealt at random (a fixed seed: the same rows, the same folds) into this many folds; each
# fold's encodings are fitted on the other folds' rows. Not blocks of time: the rows of a group that is new
# in the latest block (a store that just opened) would then have no out-of-fold rows at all.
ENCODING_FOLDS = 5
_FOLD_SEED = 20_240_101


def encoding_folds(n: int) -> np.ndarray:
    """Each of `n` training rows' fold (n,), in 0..ENCODING_FOLDS-1, folds as equal in size as n allows."""
    return np.random.default_rng(_FOLD_SEED).permutation(n) % ENCODING_FOLDS


def _out_of_fold(inverse: np.ndarray, y: np.ndarray, sums: np.ndarray, counts: np.ndarray, m: float, prior: float,
                 known: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """A target encoding's column for its own training rows (n,), cross-fitted: each row gets its group's
    smoothed mean over the rows of the other folds (`folds`, (n,)), so no row sees its own target (a leak
    that grows as groups get small). `inverse` (n,): each row's group; `sums`, `counts`: per group over all
    rows; `known`: groups without an unknown part. A group with no rows in the other folds (or an unknown
    part) gets `prior`, as an unseen group does when predicting."""
    # The other folds hold (k-1)/k of a group's rows: smoothing scaled alike shrinks a training row's encoding
    # as much as the served one (fitted on every row) is shrunk, so the model learns the scale it is served.
    m = m * (ENCODING_FOLDS - 1) / ENCODING_FOLDS
    groups = len(sums)
    cell = folds * groups + inverse  # (fold, group) of each row: one pass sums every fold's groups
    in_fold = np.bincount(cell, weights=y, minlength=ENCODING_FOLDS * groups).reshape(ENCODING_FOLDS, groups)
    counted = np.bincount(cell, minlength=ENCODING_FOLDS * groups).reshape(ENCODING_FOLDS, groups)
    del cell
    other_counts = counts - counted
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums - in_fold + m * prior) / (other_counts + m)  # (folds, groups)
    means[(other_counts == 0) | ~known] = prior
    return means[folds, inverse]


class SeriesHistory:
    """Past values of each series, indexed by (series, step), from which rows' history features are read.

    `batch`: the history's rows as columns: the spec's series columns, time, target and covariates (n,),
    NaN where a row does not know one; one row per series and step (a table's key; a repeated step keeps
    one of its rows). A training run gives its whole table, a service the rows its history store holds:
    each feature is gathered value by value and summed in one fixed order, so both compute the same
    floats for the same row.
    """

    def __init__(self, spec: HistorySpec, batch: Mapping[str, np.ndarray]) -> None:
        self.spec = spec
        steps = self.steps(batch[spec.time])
        n = len(steps)
        values = [np.asarray(batch[c], dtype=np.float64) for c in spec.values]  # the target's, each covariate's
        self._table: KeyTable | None = None
        group = np.zeros(n, dtype=np.int64)
        if spec.series:
            self._table, inverse = KeyTable.group([np.asarray(batch[c]) for c in spec.series])
            group = inverse.astype(np.int64)
        k = len(self._table.keys) if self._table is not None else int(n > 0)
        self._lo = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
        self._hi = np.full(k, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(self._lo, group, steps)
        np.maximum.at(self._hi, group, steps)
        # Each series' slots: `lookback` empty ones, then one per step from its first to its last, so a
        # training row (a step of its own series) reads its whole lookback without a bounds check.
        self._pad = spec.lookback
        span = self._hi - self._lo + 1 + self._pad
        # A series with a few rows far apart would make that grid huge; then (series, step) pairs are searched.
        self._dense = bool(span.sum() <= 4 * n + 4096 + k * self._pad)
        if self._dense:
            self._base = (np.concatenate([[0], np.cumsum(span)[:-1]]) + self._pad - self._lo).astype(np.int64)
            # A row of slots per value (the target, the covariates); the last slot stays empty: reads out of bounds.
            self._grid = np.full((len(values), int(span.sum()) + 1), np.nan)
            slots = self._base[group] + steps
            for j, column in enumerate(values):
                self._grid[j][slots] = column
        else:
            self._first = int(steps.min())
            self._range = int(steps.max()) - self._first + 1
            composite = group * self._range + (steps - self._first)
            order = np.argsort(composite, kind="stable")
            self._keys, self._values = composite[order], [column[order] for column in values]

    def steps(self, times: np.ndarray) -> np.ndarray:
        """Times (datetime64, ISO text or whole years) -> step numbers on the spec's grid, int64 (n,)."""
        times = np.asarray(times)
        return time_steps(times if times.dtype.kind == "M" else as_time(times), self.spec.count, self.spec.unit)

    def features(self, batch: Mapping[str, np.ndarray]) -> Batch:
        """The history features (`spec.names`, float64 (n,) each) of the rows of `batch` (its series and
        time columns): NaN where the series has no value at a step read (a new series, a gap).

        Rows are done in blocks (a window's values are a (size, rows) matrix), each row's sums accumulated
        in one order (`_in_order`): a row's floats do not depend on the other rows or the block size.
        """
        spec = self.spec
        steps = self.steps(batch[spec.time])
        n = len(steps)
        if self._table is not None:
            group, found = self._table.find([np.asarray(batch[c]) for c in spec.series])
        else:
            group, found = np.zeros(n, dtype=np.int64), np.full(n, len(self._lo) > 0)
        group = group.astype(np.int64, copy=False)
        out = {name: np.empty(n) for name in spec.names}
        for start in range(0, n, _HISTORY_ROWS):
            rows = slice(start, start + _HISTORY_ROWS)
            at = functools.partial(self._at, group[rows], found[rows], steps[rows])
            names = iter(spec.names)
            if spec.lags:
                lagged = at(np.asarray(spec.lags))
                for j in range(len(spec.lags)):
                    out[next(names)][rows] = lagged[j]
            for w in spec.windows:
                for name, column in _window_stats(at(np.arange(w.gap, w.gap + w.size)), w.stats).items():
                    out[next(names)][rows] = column
            for value in range(1, len(spec.values)):
                lagged = at(np.asarray(spec.lags), value)
                for j in range(len(spec.lags)):
                    out[next(names)][rows] = lagged[j]
        return out

    def _at(self, group: np.ndarray, found: np.ndarray, steps: np.ndarray, back: np.ndarray,
            value: int = 0) -> np.ndarray:
        """Each row's series' values of `spec.values[value]` `back` (k,) steps before its own step, (k, n); NaN
        where it has none."""
        if not len(self._lo):
            return np.full((len(back), len(steps)), np.nan)
        g = np.where(found, group, 0)
        if not self._dense:
            offset = steps[None, :] - back[:, None] - self._first
            composite = np.where(found & (offset >= 0) & (offset < self._range), g * self._range + offset, -1)
            idx = np.minimum(np.searchsorted(self._keys, composite), len(self._keys) - 1)
            return np.where((composite >= 0) & (self._keys[idx] == composite), self._values[value][idx], np.nan)
        out = self._grid[value].take(self._base[g][None, :] + steps[None, :] - back[:, None], mode="clip")
        # Reads outside the series' slots (a row of another series or none, before the padding, after the
        # series' last step) are emptied; a training row's never are.
        lo, hi = self._lo[g] - self._pad, self._hi[g]
        outside = ~found | (steps - int(back.min()) > hi) | (steps - int(back.max()) < lo)
        if outside.any():
            t = steps[outside][None, :] - back[:, None]
            out[:, outside] = np.where(found[outside] & (t >= lo[outside]) & (t <= hi[outside]), out[:, outside],
                                       np.nan)
        return out


_HISTORY_ROWS = 1 << 15  # rows per block: a 28-step window's values in 7 MB


def _in_order(values: np.ndarray) -> np.ndarray:
    """The sum of `values` (k, n) over k, added one row after another (an accumulation is always sequential):
    the same floats for a column whatever the other columns are (numpy's own sums may pair terms by the
    array's layout)."""
    return np.cumsum(values, axis=0)[-1]


def _window_stats(values: np.ndarray, stats: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Statistics of each row's window `values` (size, n) over the values it has (n,): NaN where it has none
    (std: where it has fewer than two)."""
    known = ~np.isnan(values)
    count = known.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, _in_order(np.where(known, values, 0.0)) / np.maximum(count, 1), np.nan)
        out = {}
        for stat in stats:
            if stat == "mean":
                out[stat] = mean
            elif stat == "min":
                out[stat] = np.fmin.reduce(values, axis=0)
            elif stat == "max":
                out[stat] = np.fmax.reduce(values, axis=0)
            else:
                d = values - mean
                squares = _in_order(np.where(known, d * d, 0.0))
                out[stat] = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
    return out


# What a plan's history features are read from: a SeriesHistory, or the rows to index as one.
History = Optional[Union[SeriesHistory, Mapping[str, np.ndarray]]]


def encoding_name(cols: list[str]) -> str:
    return "te__" + "__".join(cols)


class FeaturePlan:
    """Fitted feature computation: `transform(batch) -> X` of shape (n, n_features), float64.

    `spec`: a FeatureSpec or its JSON; `arrays` holds the fitted tables (lookups,
    encodings, vocabularies, holiday dates) as plain numpy arrays.
    """

    def __init__(self, spec: FeatureSpec | Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 custom: Mapping[str, CustomFn]) -> None:
        self.spec = spec = FeatureSpec.of(spec)
        self.arrays = dict(arrays)
        self.custom = custom
        self._lookups = [
            KeyTable.from_arrays(self.arrays, f"lookup{i}", 1, lk.columns)
            for i, lk in enumerate(spec.lookups)
        ]
        self._encodings = [
            KeyTable.from_arrays(self.arrays, f"enc{i}", len(cols), ["mean"])
            for i, cols in enumerate(spec.target_encodings)
        ]
        self._vocabs = {c: Vocabulary(self.arrays[f"vocab.{c}"]) for c in spec.categorical}
        # A categorical column's value in X by its code + 1: NaN for an unknown value (code -1), else the code.
        self._coded = {c: np.arange(-1, len(v.values), dtype=np.float64) for c, v in self._vocabs.items()}
        for coded in self._coded.values():
            coded[0] = np.nan

    @property
    def feature_names(self) -> list[str]:
        return list(self.spec.numeric) + list(self.spec.categorical) + [
            encoding_name(cols) for cols in self.spec.target_encodings
        ]

    @property
    def categorical_indices(self) -> list[int]:
        start = len(self.spec.numeric)
        return list(range(start, start + len(self.spec.categorical)))

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, spec: FeatureSpec, batch: Mapping[str, np.ndarray], y: np.ndarray,
            custom: Mapping[str, CustomFn], holiday_dates: np.ndarray, history: History = None) -> "FeaturePlan":
        """Learn lookups, encodings and vocabularies from training rows.

        `y` is the model-space target (after the target transform), shape (n,). `history`: the series'
        past values the rows' history features read (a `SeriesHistory` or its rows), if the spec has any.
        """
        return cls._fit(spec, batch, y, custom, holiday_dates, history)[0]

    @classmethod
    def fit_transform(cls, spec: FeatureSpec, batch: dict[str, np.ndarray], y: np.ndarray,
                      custom: Mapping[str, CustomFn], holiday_dates: np.ndarray, keep: list[str] | None = None,
                      history: History = None) -> tuple["FeaturePlan", np.ndarray, Batch]:
        """`fit`, then `transform` and `derive` of the same rows: (plan, X, derived batch).

        Fitting already derives every column; deriving a million rows again costs as much.
        `keep`: the derived columns the caller needs back; with it, `batch` is emptied and every
        other column freed before the matrix is built (text columns alone are hundreds of MB), and
        each column the matrix is built from is freed once copied into it. X is column-major
        (Fortran order): each of its columns is written in one contiguous pass.
        """
        cls._check_inputs(spec, batch)
        plan, work, codes, encoded = cls._fit(spec, batch, y, custom, holiday_dates, history)
        n = len(work[spec.inputs[0]]) if spec.inputs else 0
        if keep is not None:
            batch.clear()
            work = {c: v for c, v in work.items() if c in {*spec.numeric, *keep}}
        X = np.empty((n, len(plan.feature_names)), dtype=np.float64, order="F")
        numeric = spec.numeric
        for j, column in enumerate(plan._columns(work, codes, encoded)):
            X[:, j] = column
            # Freed at its last use (a column may be listed twice), unless the caller keeps it.
            if keep is not None and j < len(numeric) and numeric[j] not in (*numeric[j + 1:], *keep):
                del work[numeric[j]]
            del column  # with the entries _columns gave up, its last reference
        return plan, X, work if keep is None else {c: work[c] for c in keep if c in work}

    @classmethod
    def _fit(cls, spec: FeatureSpec, batch: Mapping[str, np.ndarray], y: np.ndarray,
             custom: Mapping[str, CustomFn], holiday_dates: np.ndarray, history: History
             ) -> tuple["FeaturePlan", Batch, dict[str, np.ndarray], list[np.ndarray | None]]:
        """The plan, the derived batch, and what `_columns` needs to skip looking the rows up again:
        each categorical column's codes; and each encoding's column for these training rows, cross-fitted
        (`_out_of_fold`): a row's own target never enters its own encoding."""
        arrays: dict[str, np.ndarray] = {"holidays": np.unique(np.asarray(holiday_dates, dtype="datetime64[D]"))}
        work = dict(batch)
        for i, lk in enumerate(spec.lookups):
            # Attributes may change over time: keep each key's last row, which is its latest because
            # training rows come sorted by time (TrainingTable.read). Reversed: np.unique keeps first occurrences.
            rev = {c: np.asarray(work[c])[::-1] for c in [lk.key, *lk.columns]}
            table, inverse = KeyTable.group([rev[lk.key]])
            first = np.full(len(table.keys), len(inverse), dtype=np.int64)
            np.minimum.at(first, inverse, np.arange(len(inverse)))
            table.values = {c: _unicode(_normalise(rev[c])[first]) for c in lk.columns}
            arrays.update(table.to_arrays(f"lookup{i}"))
        plan = cls(spec, {**arrays, **_empty_tables(spec)}, custom)
        work = plan._derive(work, history=history)
        for key in ("numeric", "categorical"):
            for c in getattr(spec, key):
                if c not in work:
                    raise FeatureSpecError(f"features.{key}", c)
        for cols in spec.target_encodings:
            for c in cols:
                if c not in work:
                    raise FeatureSpecError("features.target_encodings", c)
        if spec.target_encodings and len(_classes(spec) or ()) > 2:
            # The mean of class indices orders classes that have no order.
            raise FeatureSpecError("features.target_encodings", reason="a multiclass target has no mean to encode "
                                   "with: leave target_encodings out (categorical columns carry the groups)")
        y = np.asarray(y, dtype=np.float64)
        prior = float(y.mean())
        arrays["global_mean"] = np.array([prior])
        m = float(spec.encoding_smoothing)
        fitted: dict[str, tuple[Vocabulary, np.ndarray]] = {}  # a column in several encodings is coded once

        def fit_codes(c: str) -> tuple[Vocabulary, np.ndarray]:
            if c not in fitted:
                fitted[c] = Vocabulary.fit_codes(work[c])
            return fitted[c]

        encoded: list[np.ndarray | None] = []
        folds = encoding_folds(len(y)) if spec.target_encodings else None
        for i, cols in enumerate(spec.target_encodings):
            table, inverse = KeyTable.group_codes([fit_codes(c) for c in cols])
            sums = np.bincount(inverse, weights=y, minlength=len(table.keys))
            counts = np.bincount(inverse, minlength=len(table.keys))
            table.values = {"mean": (sums + m * prior) / (counts + m)}
            arrays.update(table.to_arrays(f"enc{i}"))
            encoded.append(_out_of_fold(inverse, y, sums, counts, m, prior, table.keys >= 0, folds))
            del inverse
        for c in spec.categorical:
            arrays[f"vocab.{c}"] = fit_codes(c)[0].values
        codes = {c: fit_codes(c)[1] for c in spec.categorical}
        return cls(spec, arrays, custom), work, codes, encoded

    # -- applying --------------------------------------------------------------------------
    def _derive(self, batch: Mapping[str, np.ndarray], found_keys: dict[str, np.ndarray] | None = None,
                history: History = None, with_history: bool = True) -> Batch:
        """Every step but the final encodings: lookups, calendar, holidays, custom columns, history features
        (unless `with_history` is false).

        `found_keys`, if given, receives per lookup key column whether each row's key is in the table."""
        work: Batch = dict(batch)
        n = len(next(iter(work.values()))) if work else 0
        for lk, table in zip(self.spec.lookups, self._lookups):
            idx, found = table.find([work[lk.key]])
            if found_keys is not None:
                found_keys[lk.key] = found
            all_found = bool(found.all())
            for c in lk.columns:
                known = table.values[c]
                given = work.get(c)
                if len(known) and all_found and given is None:  # a request that gives only the key
                    work[c] = known[idx]
                    continue
                fill = _missing_like(known, n) if given is None else _normalise(given)
                if len(known) and all_found:  # as for every training row
                    dtype = np.result_type(known, fill)
                    if n > _SMALL_BATCH and fill.dtype == dtype and _gathers(known, idx, fill):
                        work[c] = fill  # the rows already hold their key's attributes: no copy of them
                    else:  # cast, then gathered: shared text stays shared
                        work[c] = known.astype(dtype, copy=False)[idx]
                else:
                    work[c] = np.where(found, known[idx] if len(known) else fill, fill)
        t = as_time(work[self.spec.time_column])
        days = t.astype("datetime64[D]")
        for part in self.spec.calendar:
            work[part] = _calendar_part(t, days, part, self.spec.slot_minutes)
        if self.spec.holidays:
            hol = self.arrays["holidays"]
            work["is_holiday"] = _in_sorted(hol, days).astype(np.int64)
            work["is_holiday_eve"] = _in_sorted(hol, days + 1).astype(np.int64)
        custom = self.spec.custom  # shared text is only converted for them: without any, no look
        given = _UnicodeText(work) if custom and any(v.dtype.kind == "O" for v in work.values()) else work
        for name in custom:
            produced = self.custom[name](given)
            for col, values in produced.items():
                arr = np.asarray(values)
                if arr.shape != (n,):
                    raise ValueError(f"custom feature {name} returned column {col!r} of shape {arr.shape}, "
                                     f"expected ({n},)")
                work[col] = arr
        if self.spec.history is not None and with_history:
            work.update(self.history(history).features(work))
        return work

    def history(self, history: History) -> SeriesHistory:
        """`history` as this plan's `SeriesHistory` (its rows, a batch, are indexed once here)."""
        if self.spec.history is None:
            raise ValueError("this plan has no history features")
        if history is None:
            raise ValueError("history features need the series' past values: pass `history`")
        return history if isinstance(history, SeriesHistory) else SeriesHistory(self.spec.history, history)

    def derive(self, batch: Mapping[str, np.ndarray], history: History = None) -> Batch:
        """The batch with every derived column added (used for baselines, slices and monitoring); the history
        features only when `history` is given."""
        return self._derive(batch, history=history, with_history=history is not None)

    def transform(self, batch: Mapping[str, np.ndarray], history: History = None) -> np.ndarray:
        """Feature matrix (n, n_features), float64; unknown categories and keys become NaN.
        `history`: the series' past values, for a spec with history features (`fit`)."""
        self._check_inputs(self.spec, batch)
        return self._assemble(self._derive(batch, history=history))

    def transform_checked(self, batch: Mapping[str, np.ndarray], history: History = None
                          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`transform`, and per input column whose values the model learned (lookup keys, categorical
        features) a bool array (n,) marking values never seen in training: one pass, one lookup each."""
        self._check_inputs(self.spec, batch)
        found: dict[str, np.ndarray] = {}
        X = self._assemble(self._derive(batch, found, history))
        inputs = set(self.spec.inputs)
        unseen = {c: ~f for c, f in found.items() if c in inputs}
        start = len(self.spec.numeric)
        for j, c in enumerate(self.spec.categorical):
            if c in inputs:  # an unknown category is coded NaN in X, a known one by its code
                m = np.isnan(X[:, start + j])
                unseen[c] = unseen[c] | m if c in unseen else m
        return X, unseen

    @staticmethod
    def _check_inputs(spec: FeatureSpec, batch: Mapping[str, np.ndarray]) -> None:
        missing = [c for c in spec.inputs if c not in batch]
        if missing:
            raise ValueError(f"missing input column(s): {', '.join(missing)}")

    def _assemble(self, work: Batch) -> np.ndarray:
        """The feature matrix (n, p) from a derived batch, row-major."""
        n = len(work[self.spec.inputs[0]]) if self.spec.inputs else 0
        if n <= _ASSEMBLE_ROWS:
            return self._matrix(work)
        # Written column by column, a row-major X would be written all over, each row many times;
        # a block of rows at a time stays in cache.
        X = np.empty((n, len(self.feature_names)), dtype=np.float64)
        for start in range(0, n, _ASSEMBLE_ROWS):
            block = slice(start, start + _ASSEMBLE_ROWS)
            X[block] = self._matrix({c: v[block] for c, v in work.items()})
        return X

    def _matrix(self, work: Batch) -> np.ndarray:
        n = len(work[self.spec.inputs[0]]) if self.spec.inputs else 0
        columns = list(self._columns(work))
        if not columns:
            return np.empty((n, 0), dtype=np.float64)
        return np.stack(columns, axis=1, dtype=np.float64, casting="unsafe")  # one copy into the (n, p) matrix

    def _columns(self, work: Batch, codes: dict[str, np.ndarray] | None = None,
                 encoded: list[np.ndarray | None] | None = None) -> Iterator[np.ndarray]:
        """The feature matrix's columns (n,), in order.

        `codes` (categorical column -> codes): what fitting found for these very rows, the same as
        looking them up again; `encoded` (per encoding, the training rows' cross-fitted column):
        used instead of the fitted tables. Each entry is given up as it is used: nothing else holds it then.
        """
        yield from (work[c] for c in self.spec.numeric)
        categorical = self.spec.categorical
        for j, c in enumerate(categorical):
            if codes is None:
                col = self._vocabs[c].codes(work[c])
            else:  # given up at the column's last use (a column may be listed twice)
                col = codes[c] if c in categorical[j + 1:] else codes.pop(c)
            yield self._coded[c][col + 1]
        prior = float(self.arrays["global_mean"][0])
        for i, (cols, table) in enumerate(zip(self.spec.target_encodings, self._encodings)):
            if encoded is not None:
                column, encoded[i] = encoded[i], None
                yield column
                continue
            idx, found = table.find([work[c] for c in cols])
            yield np.where(found, table.values["mean"][idx], prior)

    def known_values(self, column: str) -> np.ndarray | None:
        """The values of `column` seen in training, if the model keys anything on it."""
        for lk, table in zip(self.spec.lookups, self._lookups):
            if lk.key == column:
                return table.vocabs[0].values
        vocab = self._vocabs.get(column)
        return None if vocab is None else vocab.values

    def inverse_target(self, pred: np.ndarray) -> np.ndarray:
        """Model-space predictions -> target units; a classifier's class probabilities (n, k) as they are."""
        if _classes(self.spec) is not None:
            return np.asarray(pred, dtype=np.float64)
        out = np.expm1(pred) if self.spec.target_transform == "log1p" else np.asarray(pred, dtype=np.float64)
        if self.spec.clip_min is not None:
            out = np.maximum(out, self.spec.clip_min)
        return out



def forward_target(spec: FeatureSpec | Mapping[str, Any], y: np.ndarray) -> np.ndarray:
    """Target units -> model space (the inverse of FeaturePlan.inverse_target); a class label -> its
    index (int64) in the task's classes, ValueError naming the first value that is none of them."""
    classes = _classes(spec)
    if classes is not None:
        y = np.asarray(y)
        index = np.full(len(y), -1, dtype=np.int64)
        for i, c in enumerate(classes):
            index[y == c] = i
        unknown = np.flatnonzero(index < 0)
        if len(unknown):
            first = int(unknown[0])
            value = y[first].item() if isinstance(y[first], np.generic) else y[first]
            raise ValueError(f"value {value!r} at position {first} is not one of the classes {list(classes)!r}")
        return index
    y = np.asarray(y, dtype=np.float64)
    return np.log1p(np.maximum(y, 0.0)) if _target_part(spec, "target_transform") == "log1p" else y


def _target_part(spec: FeatureSpec | Mapping[str, Any], name: str) -> Any:
    """`target_transform` or `task` of a spec, or of the JSON of its target part alone (the task and the
    monitoring pass only that)."""
    return spec.get(name) if isinstance(spec, Mapping) else getattr(spec, name)


def _classes(spec: FeatureSpec | Mapping[str, Any]) -> list[Any] | None:
    """The classes of a classification spec (labels as JSON keeps them), None for regression (and for a
    spec written before tasks existed)."""
    task = _target_part(spec, "task") or {}
    return task.get("classes") if task.get("name", "regression") != "regression" else None


def _empty_tables(spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Placeholders so a half-fitted plan can derive columns before encodings exist."""
    out: dict[str, np.ndarray] = {"global_mean": np.array([0.0])}
    for i, cols in enumerate(spec.target_encodings):
        out[f"enc{i}.keys"] = np.array([], dtype=np.int64)
        out[f"enc{i}.value.mean"] = np.array([], dtype=np.float64)
        out.update({f"enc{i}.vocab{k}": np.array([], dtype=np.int64) for k in range(len(cols))})
    out.update({f"vocab.{c}": np.array([], dtype=np.int64) for c in spec.categorical})
    return out
