"""Drift: a release's reference profile, and production windows compared with it.

At training time :func:`build_profile` summarises the holdout rows (the release's out-of-sample
data): for every monitored column its binned distribution (and, for numeric columns, a sample
for the KS test), the same for the prediction and the target, and the mean residual of each
segment (a categorical value or a combination of them). The :class:`Profile` is stored as plain
JSON (``to_json``/``from_json``) and travels with the model.

In production :func:`compare` takes one window of logged rows (and, once actuals arrive, their
targets and residuals) and returns a :class:`WindowDrift` (its ``to_json()`` is the
``drift.windows[*]`` entry of the monitoring report without ``start``/``end``): population
stability index (PSI) and KS statistic per column, the same for prediction and target, and the
residual bias per segment, each with its alarm.

Categorical values are compared by their text form, so ``11``, ``11.0`` and ``"11"`` are the
same value; ``None`` and NaN are the value ``"<missing>"``. Numeric values are floats; NaN and
``None`` are missing and have a bin of their own. Only numpy and scipy are used.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

PROFILE_FORMAT = 1
MISSING = "<missing>"
SEGMENT_JOIN = "|"  # between the values of a segment: "BEVERAGES|1"
GROUP_JOIN = "×"  # between the columns of a segment feature: "family×onpromotion"

_EPS = 1e-4  # floor of a bin fraction in PSI: an empty bin would make ln(w/r) infinite
_MAX_NEW_VALUES = 20
# Values of a categorical column beyond its top `max_categories` are kept (only) to tell
# "seen but rare" from "new"; the cap bounds the profile for identifier-like columns.
_MAX_SEEN = 100_000

Columns = Mapping[str, np.ndarray]
Factor = tuple[list[str], np.ndarray]  # distinct text forms of a column, and each row's index into them


# ---- the profile and the comparison, typed --------------------------------------------------------

@dataclass(frozen=True)
class NumericSummary:
    """A numeric column's reference distribution. `edges`: the inner quantile bin edges (the outer
    bins are open-ended); `fractions`: the share of rows in each of the len(edges) + 1 bins;
    `missing`: the share of NaN rows; `sample`: finite values, sorted, kept for the KS test."""

    edges: list[float]
    fractions: list[float]
    missing: float
    sample: list[float]
    kind: ClassVar[str] = "numeric"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class CategoricalSummary:
    """A categorical column's reference distribution, by text form. `values`: the most frequent ones;
    `fractions`: their shares of rows; `other`: the share of all other values, which `other_values`
    lists (sorted; every one of them when `other_values_complete`), to tell "rare" from "new"."""

    values: list[str]
    fractions: list[float]
    other: float
    other_values: list[str]
    other_values_complete: bool
    kind: ClassVar[str] = "categorical"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


Summary = NumericSummary | CategoricalSummary


def _summary(doc: Mapping[str, Any]) -> Summary:
    fields = {k: v for k, v in doc.items() if k not in ("kind", "name")}
    return NumericSummary(**fields) if doc["kind"] == NumericSummary.kind else CategoricalSummary(**fields)


@dataclass(frozen=True)
class ColumnProfile:
    """One named distribution of the profile: a monitored column, or a classifier's class probability."""

    name: str
    summary: Summary

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.summary.to_json()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ColumnProfile:
        return cls(doc["name"], _summary(doc))


@dataclass(frozen=True)
class SegmentProfile:
    """The largest segments of one segment feature (`columns` joined by "×"): each value (the columns'
    values joined by "|"), its mean residual (training space) and its rows, largest first."""

    feature: str
    columns: list[str]
    values: list[str]
    mean: list[float]
    rows: list[int]


@dataclass(frozen=True)
class Profile:
    """A release's reference distributions (see :func:`build_profile`). `rows`: holdout rows profiled;
    `residual_mean`, `residual_std`: of the finite residuals, training-space units (None without any);
    `probabilities`: a classifier's per class (None for other profiles)."""

    format: int
    rows: int
    features: list[ColumnProfile]
    prediction: Summary
    target: Summary
    probabilities: list[ColumnProfile] | None
    residual_mean: float | None
    residual_std: float | None
    segments: list[SegmentProfile]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "rows": self.rows, "features": [f.to_json() for f in self.features],
                "prediction": self.prediction.to_json(), "target": self.target.to_json(),
                **({"probabilities": [p.to_json() for p in self.probabilities]}
                   if self.probabilities is not None else {}),
                "residual_mean": self.residual_mean, "residual_std": self.residual_std,
                "segments": [asdict(s) for s in self.segments]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Profile:
        """The profile stored as `to_json()` made it (releases of every cd4ml version so far)."""
        probabilities = doc.get("probabilities")
        return cls(doc["format"], doc["rows"], [ColumnProfile.from_json(f) for f in doc["features"]],
                   _summary(doc["prediction"]), _summary(doc["target"]),
                   [ColumnProfile.from_json(p) for p in probabilities] if probabilities is not None else None,
                   doc["residual_mean"], doc["residual_std"], [SegmentProfile(**s) for s in doc["segments"]])


@dataclass(frozen=True)
class ColumnDrift:
    """One monitored column in a window: PSI over the reference bins, KS statistic and p-value against
    the reference sample (numeric only), up to 20 values the reference never saw (categorical only),
    and whether it drifted; psi/ks are None for a window without rows."""

    name: str
    kind: str
    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    new_values: list[str]
    alarm: bool


@dataclass(frozen=True)
class OutcomeDrift:
    """The prediction, the target or one class's probability in a window, against the reference."""

    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    alarm: bool


@dataclass(frozen=True)
class ClassDrift:
    """A classifier's probability of class `name` in a window (None statistics: no predictions)."""

    name: str
    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    alarm: bool


@dataclass(frozen=True)
class SegmentDrift:
    """One segment's residual bias in a window: its mean residual minus its reference mean, in
    reference residual standard deviations (None when that deviation is 0), over `rows` rows."""

    feature: str
    value: str
    rows: int
    bias: float | None
    alarm: bool


@dataclass(frozen=True)
class WindowDrift:
    """One production window against a reference profile (see :func:`compare`)."""

    rows: int
    alarm: bool
    drifted: list[str]
    features: list[ColumnDrift]
    prediction: OutcomeDrift | None
    target: OutcomeDrift | None
    segments: list[SegmentDrift]
    probabilities: list[ClassDrift] | None  # a classifier's profile only

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.probabilities is None:
            del doc["probabilities"]
        return doc


# ---- categorical values as text ---------------------------------------------------------------

def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        if value.is_integer():
            return str(int(value))
    return str(value)


def _factorize(values: Any) -> Factor:
    """Distinct text forms of ``values`` and each row's index into them.

    Returns ``labels`` (list of str, no duplicates) and ``codes`` (int array of shape (n,)).
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"columns must be 1-D arrays, got shape {arr.shape}")
    if arr.dtype.kind in "biufUM":
        # Distinct values of one numpy dtype have distinct text forms; NaNs collapse into one.
        uniq, codes = np.unique(arr, return_inverse=True)
        return [_text(v) for v in uniq.tolist()], codes.astype(np.intp)
    # Factorize the raw objects first (hashing is cheaper than formatting every row), then
    # merge those sharing a text form: 11 and "11", None and NaN. (True == 1 in Python, so a
    # column mixing them keeps the first one's text.)
    rows = arr.tolist()
    first = {value: i for i, value in enumerate(dict.fromkeys(rows))}
    codes = np.fromiter(map(first.__getitem__, rows), dtype=np.intp, count=len(rows))
    merged: dict[str, int] = {}
    remap = np.array([merged.setdefault(_text(value), len(merged)) for value in first], dtype=np.intp)
    return list(merged), remap[codes]


def _categorical_profile(labels: list[str], codes: np.ndarray, max_categories: int) -> CategoricalSummary:
    n = len(codes)
    counts = np.bincount(codes, minlength=len(labels))
    order = sorted(range(len(labels)), key=lambda i: (-counts[i], labels[i]))
    top, rest = order[:max_categories], order[max_categories:]
    return CategoricalSummary([labels[i] for i in top], [float(counts[i] / n) for i in top],
                              float(counts[rest].sum() / n), sorted(labels[i] for i in rest[:_MAX_SEEN]),
                              len(rest) <= _MAX_SEEN)


def _categorical_compare(ref: CategoricalSummary, labels: list[str], codes: np.ndarray) -> tuple[float, list[str]]:
    """PSI over the reference's values + "other" + "new values", and the new values (<= 20)."""
    counts = np.bincount(codes, minlength=len(labels))
    k = len(ref.values)
    position = {value: i for i, value in enumerate(ref.values)}
    seen_other = set(ref.other_values)
    window = np.zeros(k + 2)
    new: list[tuple[int, str]] = []
    for label, count in zip(labels, counts.tolist()):
        if label in position:
            window[position[label]] += count
        elif label in seen_other or not ref.other_values_complete:
            window[k] += count
        else:
            window[k + 1] += count
            new.append((-count, label))
    reference = np.array([*ref.fractions, ref.other, 0.0])
    new_values = [label for _, label in sorted(new)[:_MAX_NEW_VALUES]]
    return _psi(reference, window / len(codes)), new_values


# ---- numeric values ---------------------------------------------------------------------------

def _as_float(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"columns must be 1-D arrays, got shape {arr.shape}")
    return arr


def _bin_fractions(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fractions of ``x`` (shape (n,), n > 0) in the bins of ``edges`` plus a last bin for NaN."""
    finite = ~np.isnan(x)
    counts = np.bincount(np.searchsorted(edges, x[finite], side="right"), minlength=len(edges) + 1)
    return np.append(counts, len(x) - finite.sum()) / len(x)


def _numeric_profile(x: np.ndarray, bins: int, sample_size: int, rng: np.random.Generator) -> NumericSummary:
    # Infinite values fall into the open outer bins but would make quantiles and KS meaningless.
    finite = x[np.isfinite(x)]
    if len(finite):
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    else:
        edges = np.empty(0)
    fractions = _bin_fractions(edges, x)
    sample = finite if len(finite) <= sample_size else rng.choice(finite, size=sample_size, replace=False)
    return NumericSummary(edges.tolist(), fractions[:-1].tolist(), float(fractions[-1]), np.sort(sample).tolist())


def _numeric_compare(ref: NumericSummary, x: np.ndarray) -> tuple[float, float | None, float | None]:
    """PSI over the reference's bins (incl. missing), and KS statistic and p-value vs its sample."""
    psi = _psi(np.array([*ref.fractions, ref.missing]), _bin_fractions(np.asarray(ref.edges), x))
    finite = x[np.isfinite(x)]
    if not len(finite) or not ref.sample:
        return psi, None, None
    from scipy import stats  # here: importing SciPy takes a second, and training only builds profiles

    # The exact method costs ~6 ms per 7,000-row column; at window sizes worth judging the
    # asymptotic distribution is as good.
    result = stats.ks_2samp(finite, np.asarray(ref.sample), method="asymp")
    return psi, float(result.statistic), float(result.pvalue)


def _psi(reference: np.ndarray, window: np.ndarray) -> float:
    """Population stability index sum((w - r) * ln(w / r)) of two fraction vectors of one shape."""
    r = np.maximum(reference, _EPS)
    w = np.maximum(window, _EPS)
    return float(np.sum((w - r) * np.log(w / r)))


def _rng(seed: int, name: str) -> np.random.Generator:
    # One stream per column, keyed by its name, so adding a column leaves the others' samples alone.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ---- segments ---------------------------------------------------------------------------------

def _segment_codes(factors: Sequence[Factor]) -> Factor:
    """Combine the factorized columns of one segment feature into labels like "BEVERAGES|1"."""
    if len(factors) == 1:
        return factors[0]
    sizes = [len(labels) for labels, _ in factors]
    combined = np.ravel_multi_index(tuple(codes for _, codes in factors), sizes)
    uniq, codes = np.unique(combined, return_inverse=True)
    parts = np.unravel_index(uniq, sizes)
    labels = [SEGMENT_JOIN.join(factors[j][0][parts[j][i]] for j in range(len(factors))) for i in range(len(uniq))]
    return labels, codes


def _segment_sums(labels: list[str], codes: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a finite residual, and their residual sum, per label; two arrays of shape (len(labels),)."""
    ok = np.isfinite(residual)
    rows = np.bincount(codes[ok], minlength=len(labels))
    sums = np.bincount(codes[ok], weights=residual[ok], minlength=len(labels))
    return rows, sums


def _segment_features(kinds: Mapping[str, str], segments: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each categorical column alone, then each group of categorical columns; no duplicates."""
    groups = [[name] for name, kind in kinds.items() if kind == "categorical"]
    for group in segments:
        group = list(group)
        if group and all(kinds.get(name) == "categorical" for name in group) and group not in groups:
            groups.append(group)
    return groups


# ---- public API -------------------------------------------------------------------------------

def build_profile(
    columns: Columns,
    kinds: Mapping[str, str],
    prediction: np.ndarray,
    target: np.ndarray,
    residual: np.ndarray,
    segments: Sequence[Sequence[str]] = (),
    *,
    probabilities: Mapping[str, np.ndarray] | None = None,
    bins: int = 10,
    max_categories: int = 50,
    sample_size: int = 5000,
    seed: int = 0,
) -> Profile:
    """Reference profile of a release's holdout rows (stored as ``Profile.to_json()``).

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        The monitored columns. Numeric columns hold numbers (NaN or None = missing);
        categorical ones ints, strings or bools, compared later by their text form.
    kinds : mapping of str to {"numeric", "categorical"}
        The kind of every column in ``columns``.
    prediction, target : array of shape (n,)
        The release's predictions and the actual values, in target units. Non-finite values
        are left out. With ``probabilities`` (a classifier) they are class labels instead,
        summarised as categories.
    residual : array of shape (n,)
        Residual in the model's training space (e.g. ``log1p(target) - log1p(prediction)``);
        rows with a non-finite residual are left out of the segment statistics.
    segments : sequence of sequences of str, default=()
        Groups of columns whose value combinations are segments too (e.g.
        ``[["family", "onpromotion"]]``), besides every categorical column alone. Groups that
        name a column not in ``columns`` or not categorical are skipped.
    bins : int, default=10
        Quantile bins of numeric columns (fewer when quantiles coincide); below the lowest
        and above the highest edge the outer bins are open-ended, and missing values have
        a bin of their own.
    max_categories : int, default=50
        The most frequent values kept per categorical column (the rest count as "other"),
        and the largest segments kept per segment feature.
    sample_size : int, default=5000
        Reference values kept per numeric column for the KS test.
    seed : int, default=0
        Seed of that sampling; the profile is a function of the inputs and the seed.
    probabilities : mapping of str to array of shape (n,), optional
        A classifier's probability of each class (class name -> values), each summarised as a
        numeric column under ``probabilities``.

    Returns
    -------
    profile : Profile
        ``format``, ``rows``; ``features`` (one per column, in the order of ``columns``:
        a :class:`NumericSummary` or :class:`CategoricalSummary`); ``prediction`` and
        ``target`` (summaries; categorical for a classifier); ``probabilities``;
        ``residual_mean`` and ``residual_std`` (training-space units, None without finite
        residuals); ``segments`` (:class:`SegmentProfile`).
    """
    if bins < 1 or max_categories < 1 or sample_size < 1:
        raise ValueError("bins, max_categories and sample_size must be >= 1")
    n = _profile_rows(columns, kinds, prediction, target, residual)
    binning = _Binning(bins, max_categories, sample_size, seed)
    profiled = _column_profiles(columns, kinds, binning)
    res = _as_float(residual)
    finite = res[np.isfinite(res)]
    groups = _segment_features({name: kinds[name] for name in columns}, segments)
    return Profile(
        PROFILE_FORMAT, n, profiled.features,
        _outcome_profile(prediction, "prediction", binning, probabilities is not None),
        _outcome_profile(target, "target", binning, probabilities is not None),
        [ColumnProfile(name, _outcome_profile(p, f"probability of {name}", binning, False))
         for name, p in probabilities.items()] if probabilities is not None else None,
        float(finite.mean()) if len(finite) else None,
        float(finite.std()) if len(finite) else None,
        [_segment_profile(group, profiled.factors, res, max_categories) for group in groups],
    )


@dataclass(frozen=True)
class _Binning:
    """How :func:`build_profile` summarises a column (its parameters of the same names)."""

    bins: int
    max_categories: int
    sample_size: int
    seed: int


@dataclass
class _Columns:
    """The monitored columns' summaries, and the categorical ones factorized for the segments."""

    features: list[ColumnProfile]
    factors: dict[str, Factor]


def _profile_rows(columns: Columns, kinds: Mapping[str, str], prediction: np.ndarray, target: np.ndarray,
                  residual: np.ndarray) -> int:
    """The rows of the profile's inputs, once they are checked to be of one length > 0 and every column of a kind."""
    n = len(prediction)
    for name, values in [("target", target), ("residual", residual), *columns.items()]:
        if len(values) != n:
            raise ValueError(f"{name!r} has {len(values)} rows, prediction has {n}")
    if n == 0:
        raise ValueError("a reference profile needs at least one row")
    unknown = {name: kinds.get(name) for name in columns if kinds.get(name) not in ("numeric", "categorical")}
    if unknown:
        raise ValueError(f"kinds must be 'numeric' or 'categorical' for every column; got {unknown}")
    return n


def _column_profiles(columns: Columns, kinds: Mapping[str, str], binning: _Binning) -> _Columns:
    out = _Columns([], {})
    for name, values in columns.items():
        if kinds[name] == "numeric":
            summary = _numeric_profile(_as_float(values), binning.bins, binning.sample_size, _rng(binning.seed, name))
        else:
            out.factors[name] = _factorize(values)
            summary = _categorical_profile(*out.factors[name], binning.max_categories)
        out.features.append(ColumnProfile(name, summary))
    return out


def _outcome_profile(values: np.ndarray, name: str, binning: _Binning, labels: bool) -> Summary:
    if labels:
        return _categorical_profile(*_factorize(values), binning.max_categories)
    x = _as_float(values)
    x = x[np.isfinite(x)]
    if not len(x):
        raise ValueError(f"{name} has no finite values")
    return _numeric_profile(x, binning.bins, binning.sample_size, _rng(binning.seed, name))


def _segment_profile(group: list[str], factors: Mapping[str, Factor], residual: np.ndarray,
                     max_categories: int) -> SegmentProfile:
    """The largest segments of one segment feature, with their mean residual and rows."""
    labels, codes = _segment_codes([factors[name] for name in group])
    rows, sums = _segment_sums(labels, codes, residual)
    keep = sorted(np.flatnonzero(rows).tolist(), key=lambda i: (-rows[i], labels[i]))[:max_categories]
    return SegmentProfile(GROUP_JOIN.join(group), group, [labels[i] for i in keep],
                          [float(sums[i] / rows[i]) for i in keep], [int(rows[i]) for i in keep])


def compare(
    profile: Profile,
    columns: Columns,
    prediction: np.ndarray | None,
    target: np.ndarray | None,
    residual: np.ndarray | None,
    *,
    psi_alarm: float,
    ks_alarm: float,
    bias_alarm: float,
    min_rows: int,
    probabilities: Mapping[str, np.ndarray] | None = None,
) -> WindowDrift:
    """Compare one production window with a reference profile.

    Parameters
    ----------
    profile : Profile
        From :func:`build_profile` (also after a JSON round trip: ``Profile.from_json``).
    columns : mapping of str to array of shape (n,)
        The window's rows; must hold every column of the profile (others are ignored).
    prediction : array of shape (m,) or None
        The window's predictions by the profile's release, in target units (m may differ
        from n: other versions' rows are left out); None when there are none.
    target : array of shape (k,) or None
        The actuals received for the window, in target units; None before any arrive.
    residual : array of shape (n,) or None
        Per window row, the residual in the model's training space, NaN where the row has
        no actual (yet); None when no row has one.
    psi_alarm, ks_alarm : float
        PSI and KS statistic at or above which a column (or prediction, target) drifted.
    bias_alarm : float
        Absolute segment bias, in reference residual standard deviations, at or above which
        a segment drifted.
    min_rows : int
        Rows a window (for prediction and target: their own rows; for a segment: its rows
        with a residual) needs before it is judged. Smaller segments are not listed.
    probabilities : mapping of str to array of shape (m,), optional
        For a classifier's profile: its probability of each class for the window's predictions
        (the rows of ``prediction``, which then holds class labels).

    Returns
    -------
    window : WindowDrift
        ``rows`` (n), ``alarm``, ``drifted`` (alarming column names, then "prediction",
        "target", then segment features such as "family×onpromotion"), ``features`` (one
        :class:`ColumnDrift` per profile column), ``prediction`` and ``target``
        (:class:`OutcomeDrift`; None when not given), ``segments`` (:class:`SegmentDrift`;
        largest absolute bias first within each feature). ``bias`` is the segment's mean
        residual minus its reference mean (the overall reference mean for a segment the
        profile does not hold), over the reference residual standard deviation. A
        classifier's window also has ``probabilities`` (one :class:`ClassDrift` per class);
        a drifted one is named "probability of <class>".
    """
    alarms = _Alarms(psi_alarm, ks_alarm, bias_alarm, min_rows)
    n = _window_rows(profile, columns, residual)
    compared = _compare_columns(profile, columns, n, alarms)
    segments = []
    if residual is not None and n:
        res = _as_float(residual)
        if len(res) != n:
            raise ValueError(f"residual has {len(res)} rows, the window's columns have {n}")
        segments = _compare_segments(profile, columns, compared.factors, res, alarms)

    pred = _compare_outcome(prediction, profile.prediction, alarms)
    targ = _compare_outcome(target, profile.target, alarms)
    drifted = [f.name for f in compared.features if f.alarm]
    drifted += [name for name, entry in (("prediction", pred), ("target", targ)) if entry and entry.alarm]
    per_class = _compare_probabilities(profile, probabilities, alarms)
    drifted += [f"probability of {c.name}" for c in per_class or [] if c.alarm]
    for segment in segments:
        if segment.alarm and segment.feature not in drifted:
            drifted.append(segment.feature)
    return WindowDrift(n, bool(drifted), drifted, compared.features, pred, targ, segments, per_class)


@dataclass(frozen=True)
class _Alarms:
    """:func:`compare`'s thresholds (its parameters of the same names)."""

    psi: float
    ks: float
    bias: float
    min_rows: int

    def drifted(self, rows: int, psi: float, ks: float | None) -> bool:
        return rows >= self.min_rows and (psi >= self.psi or (ks is not None and ks >= self.ks))


def _window_rows(profile: Profile, columns: Columns, residual: np.ndarray | None) -> int:
    """The window's rows, once its columns are checked to hold the profile's and to be of one length."""
    missing = [f.name for f in profile.features if f.name not in columns]
    if missing:
        raise ValueError(f"the window lacks the profile's columns {missing}")
    lengths = {len(columns[f.name]) for f in profile.features}
    if len(lengths) > 1:
        raise ValueError(f"the window's columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else (len(residual) if residual is not None else 0)


@dataclass
class _Compared:
    """The window's columns compared, and the categorical ones factorized for the segments."""

    features: list[ColumnDrift]
    factors: dict[str, Factor]


def _compare_columns(profile: Profile, columns: Columns, n: int, alarms: _Alarms) -> _Compared:
    out = _Compared([], {})
    for ref in profile.features:
        name, summary = ref.name, ref.summary
        psi = ks = pvalue = None
        new_values: list[str] = []
        if n and isinstance(summary, NumericSummary):
            psi, ks, pvalue = _numeric_compare(summary, _as_float(columns[name]))
        elif n:
            out.factors[name] = _factorize(columns[name])
            psi, new_values = _categorical_compare(summary, *out.factors[name])
        alarm = psi is not None and alarms.drifted(n, psi, ks)
        out.features.append(ColumnDrift(name, summary.kind, psi, ks, pvalue, new_values, bool(alarm)))
    return out


def _compare_outcome(values: np.ndarray | None, ref: Summary, alarms: _Alarms) -> OutcomeDrift | None:
    """Prediction or target (a classifier's: class labels) vs the profile's; None without values."""
    if values is None or not len(values):
        return None
    if isinstance(ref, CategoricalSummary):
        psi, _ = _categorical_compare(ref, *_factorize(values))
        return OutcomeDrift(psi, None, None, bool(alarms.drifted(len(values), psi, None)))
    x = _as_float(values)
    x = x[np.isfinite(x)]
    if not len(x):
        return None
    psi, ks, pvalue = _numeric_compare(ref, x)
    return OutcomeDrift(psi, ks, pvalue, bool(alarms.drifted(len(x), psi, ks)))


def _compare_probabilities(profile: Profile, probabilities: Mapping[str, np.ndarray] | None,
                           alarms: _Alarms) -> list[ClassDrift] | None:
    """Each class's probability vs the profile's (a classifier's profile; None for others)."""
    if profile.probabilities is None:
        return None
    out = []
    for ref in profile.probabilities:
        entry = _compare_outcome(probabilities[ref.name] if probabilities else None, ref.summary, alarms) \
            or OutcomeDrift(None, None, None, False)
        out.append(ClassDrift(ref.name, entry.psi, entry.ks, entry.ks_pvalue, entry.alarm))
    return out


def _compare_segments(
    profile: Profile,
    columns: Columns,
    factors: dict[str, Factor],
    residual: np.ndarray,
    alarms: _Alarms,
) -> list[SegmentDrift]:
    std, overall = profile.residual_std, profile.residual_mean
    out = []
    for ref in profile.segments:
        for name in ref.columns:
            if name not in factors:
                factors[name] = _factorize(columns[name])
        labels, codes = _segment_codes([factors[name] for name in ref.columns])
        rows, sums = _segment_sums(labels, codes, residual)
        # A trained model's residual mean is ~0 overall, but not e.g. for a model of the mean
        # judged in log space; the overall mean keeps unseen segments from looking biased.
        ref_mean = dict(zip(ref.values, ref.mean))
        judged = []
        for i in np.flatnonzero(rows >= alarms.min_rows).tolist():
            if std:
                bias = (sums[i] / rows[i] - ref_mean.get(labels[i], overall)) / std
                judged.append((-abs(bias), labels[i], int(rows[i]), float(bias), bool(abs(bias) >= alarms.bias)))
            else:
                judged.append((0.0, labels[i], int(rows[i]), None, False))
        out += [SegmentDrift(ref.feature, label, count, bias, alarm) for _, label, count, bias, alarm in sorted(judged)]
    return out
