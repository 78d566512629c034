"""Validation of a dataset against the project's schema, before anything is stored.

Values that are not of their column's type are found first (pandera's own
messages for them name its internals); then a pandera schema built from
cd4ml.yaml checks ranges, categories, empty values and unique keys, plus
row-count and null-rate checks. Every broken rule is reported in the tool's own
words with its column, the number of rows and their first values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cd4ml.config import COLUMN_TYPES, ColumnSpec, ProjectConfig
from cd4ml.periods import PERIODS, Period
from cd4ml.features.transforms import time_steps

_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_EXAMPLES = 5  # rejected values listed per rule; the rest are counted
_SHOWN_CATEGORIES = 10
_INT64_LIMIT = 2.0**63
# What a value of each type must be, in the words every rejected value is reported with.
_EXPECTED = {"int": "expected a whole number", "float": "expected a number",
             "bool": "expected true, false, 1 or 0", "date": "expected a date (YYYY-MM-DD, no time of day)",
             "datetime": "expected a date and time (YYYY-MM-DD HH:MM:SS)",
             **{name: f"expected a {name} written {p.example}" for name, p in PERIODS.items()}}
_YEAR = "expected a year (a whole number from 1 to 9999)"
_EMPTY = "is empty, and the column is not nullable"


@dataclass
class Failure:
    """One rule broken by `rows` rows; `examples` are the first rejected values: {"row", "value"}.

    Rows count from 1 for the first row of data (line 2 of a CSV with its header).
    """

    rule: str
    column: str | None
    rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        return f"{where}: {self.rule} ({self.rows:,} row(s))"

    def lines(self) -> list[str]:
        """One line per rejected value shown, then how many more there are."""
        where = f"column {self.column!r}" if self.column else "table"
        if not self.examples:
            return [f"{where}: {self.rule}"]
        lines = [f"row {e['row']}, {where}: {_shown(e['value'])}: {self.rule}" for e in self.examples]
        if self.rows > len(self.examples):
            lines.append(f"  ... and {self.rows - len(self.examples):,} more row(s) in {where}: {self.rule} "
                         f"({self.rows:,} in all)")
        return lines


@dataclass
class ValidationReport:
    rows: int
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ok": self.ok,
                "failures": [f.__dict__ for f in self.failures]}


def _shown(value: Any) -> str:
    """A value on one line as JSON shows it (quotes, escaped line breaks), cut if long."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _categories(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:_SHOWN_CATEGORIES])
    return shown + (f", ... ({len(values)} in all)" if len(values) > _SHOWN_CATEGORIES else "")


def _column(spec: ColumnSpec, is_year: bool) -> tuple[pa.Column, list[str]]:
    """The pandera column and, in the order of its checks, the rule each check stands for."""
    checks: list[tuple[pa.Check, str]] = []
    if is_year:
        checks.append((pa.Check.in_range(1, 9999), _YEAR))
    if spec.min is not None:
        checks.append((pa.Check.ge(spec.min), f"below min {spec.min:g}"))
    if spec.max is not None:
        checks.append((pa.Check.le(spec.max), f"above max {spec.max:g}"))
    if spec.categories is not None:
        checks.append((pa.Check.isin(spec.categories), f"not one of the categories ({_categories(spec.categories)})"))
    forms = COLUMN_TYPES[spec.type]
    dtype = forms.pandas_nullable if spec.nullable else forms.pandas
    column = pa.Column(dtype, checks=[c for c, _ in checks], nullable=spec.nullable, coerce=True)
    return column, [rule for _, rule in checks]


def build_schema(config: ProjectConfig) -> tuple[pa.DataFrameSchema, dict[str, list[str]]]:
    """The pandera schema of the project's table (`validate` drops the columns not in it first), and
    per column the rules of its checks in order."""
    built = {name: _column(spec, name == config.time_column and spec.type == "int")
             for name, spec in config.schema_.columns.items()}
    keys = config.schema_.keys or None
    schema = pa.DataFrameSchema({name: col for name, (col, _) in built.items()}, unique=keys,
                                report_duplicates="all", ordered=False)
    return schema, {name: rules for name, (_, rules) in built.items()}


def _examples(raw: pd.DataFrame, column: str | list[str], index: list[Any]) -> list[dict[str, Any]]:
    """The first rejected values of `index` (rows of `raw`), as given in the file."""
    rows = [i for i in index if i is not None and i in raw.index][:_EXAMPLES]
    if isinstance(column, list):
        return [{"row": int(i) + 1, "value": [_plain(raw.at[i, c]) for c in column]} for i in rows]
    return [{"row": int(i) + 1, "value": _plain(raw.at[i, column])} for i in rows]


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar for the report."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _as_bool(value: Any) -> Any:
    """True/False for true/false/1/0 (any case), None for null, the value itself otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().lower(), value)
    if pd.isna(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    return value


def _typed(column: pd.Series, spec: ColumnSpec, is_year: bool) -> tuple[pd.Series, pd.Series, str] | None:
    """(the column as pandera should get it, rows whose value cannot be of the type, the rule they break);
    None when the column is already of its type.

    Values that coercion would fail on, or silently change (2.5 in an int column, "no" in a bool
    column), are found here, each reported in the tool's words, so pandera sees only typed values.
    """
    kind = column.dtype.kind
    given = column.notna()
    if spec.type in ("int", "float"):
        if kind in ("iub" if spec.type == "int" else "iufb"):
            return None
        numbers = pd.to_numeric(column, errors="coerce")
        bad = given & numbers.isna()
        if spec.type == "int":  # the text itself goes on to pandera: a float would round 19-digit numbers
            bad |= numbers.notna() & ((numbers != np.floor(numbers)) | (numbers.abs() >= _INT64_LIMIT))
            return column, bad, _YEAR if is_year else _EXPECTED["int"]
        return numbers, bad, _EXPECTED["float"]
    if spec.type == "bool":
        if kind == "b":
            return None
        values = column.map(_as_bool).astype(object)
        bad = ~values.map(lambda v: v is None or isinstance(v, bool)).astype(bool)
        return pd.Series(pd.array(values.where(~bad, None).tolist(), dtype="boolean"), index=column.index), \
            bad, _EXPECTED["bool"]
    if spec.type in ("date", "datetime"):
        return _typed_times(column, spec)
    if spec.type in PERIODS:
        return _typed_periods(column, PERIODS[spec.type])
    return None


def _typed_periods(column: pd.Series, period: Period) -> tuple[pd.Series, pd.Series, str]:
    """A week or month column as the dates its periods start on."""
    dates = pd.Series(period.starts(column.to_numpy()), index=column.index).astype("datetime64[us]")
    return dates, column.notna() & dates.isna(), _EXPECTED[period.name]


def _typed_times(column: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series, str] | None:
    given = column.notna()
    if column.dtype.kind in "iufb":
        return column, given, f"{_EXPECTED[spec.type]}, not a number: for whole years give the column type int"
    if column.dtype.kind == "M":
        times = column
    else:
        try:
            times = column.astype("datetime64[us]")
        except (ValueError, TypeError):  # one value or more is not a time: find which
            times = pd.to_datetime(column, errors="coerce", format="mixed")
    bad = given & times.isna()
    if spec.type == "date":  # dates are stored as midnight timestamps: a time of day is a data error
        bad |= times.notna() & (times != times.dt.normalize())
    return times, bad, _EXPECTED[spec.type]


def _typed_values(raw: pd.DataFrame, config: ProjectConfig) -> tuple[pd.DataFrame, list[Failure]]:
    """Every column as pandera should check it, with the rows holding values not of their column's
    type left out (each reported once, here), and the failures."""
    checked = raw.copy(deep=False)  # copy-on-write: replacing its columns leaves `raw` as it was
    failures: list[Failure] = []
    bad_rows = pd.Index([])
    for name, spec in config.schema_.columns.items():
        if name not in raw:
            continue
        found: list[tuple[pd.Series, str]] = []
        if not spec.nullable:  # found here: an empty int or bool is otherwise a coercion failure in pandera
            found.append((raw[name].isna(), _EMPTY))
        typed = _typed(raw[name], spec, name == config.time_column and spec.type == "int")
        if typed is not None:
            checked[name], bad, rule = typed
            found.append((bad, rule))
        for bad, rule in found:
            if bad.any():
                index = raw.index[bad.to_numpy()]
                failures.append(Failure(rule, name, len(index), _examples(raw, name, index.tolist())))
                bad_rows = bad_rows.union(index)
    return (checked.drop(index=bad_rows) if len(bad_rows) else checked), failures  # drop() copies every row


def _schema_failures(cases: pd.DataFrame, raw: pd.DataFrame, rules: dict[str, list[str]],
                     config: ProjectConfig) -> list[Failure]:
    """pandera's failure cases in the tool's words: one Failure per broken rule."""
    keys = list(config.schema_.keys)
    types = {name: _EXPECTED.get(spec.type, f"expected a {spec.type}") for name, spec in config.schema_.columns.items()}
    failures: list[Failure] = []
    duplicates: set[int] = set()
    for (column, check, number), group in cases.groupby(["column", "check", "check_number"], dropna=False,
                                                        sort=False):
        idx = [int(i) for i in group["index"].tolist() if i is not None and not pd.isna(i)]
        if check == "column_in_dataframe":
            failures += [Failure("column is missing", str(missing), len(raw)) for missing in group["failure_case"]]
        elif "uniqueness" in str(check) or str(check) == "unique":
            duplicates.update(idx)
        elif check == "not_nullable":
            failures.append(Failure(_EMPTY, str(column), len(idx), _examples(raw, str(column), idx)))
        else:
            column_rules = rules.get(str(column), [])
            known = not pd.isna(number) and int(number) < len(column_rules)
            # Types are checked before pandera; should one of its own checks still fail, say what was expected.
            rule = column_rules[int(number)] if known else types.get(str(column), "expected a valid value")
            failures.append(Failure(rule, str(column), max(len(idx), 1), _examples(raw, str(column), idx)))
    if duplicates:
        rows = sorted(duplicates)
        failures.append(Failure(f"repeats the key ({', '.join(keys)}) of another row", ", ".join(keys), len(rows),
                                _examples(raw, keys, rows)))
    return failures


def _shared_steps(clean: pd.DataFrame, raw: pd.DataFrame, config: ProjectConfig) -> list[Failure]:
    """With `forecast:`, rows of one series at different times within one time step (10:00 and 10:30 of a
    `1h` series): the key check sees two times, but a series has one value per step."""
    forecast, time = config.forecast, config.time_column
    if forecast is None or not len(clean) or time not in clean:
        return []
    step = forecast.step
    steps = time_steps(clean[time].to_numpy(), step.count, step.unit)
    shared = clean[list(forecast.series)].assign(_step=steps).duplicated(keep=False).to_numpy()
    if not shared.any():
        return []
    columns = [*forecast.series, time]
    rows = clean.index[shared].tolist()
    return [Failure(f"shares its {forecast.frequency} time step with another row of its series "
                    f"({', '.join(forecast.series) or 'the one series'}): one value per series and step",
                    ", ".join(columns), len(rows), _examples(raw, columns, rows))]


def validate(frame: pd.DataFrame, config: ProjectConfig,
             existing_rows: int = 0) -> tuple[pd.DataFrame, ValidationReport]:
    """Check `frame`; returns the coerced frame (schema columns only) and the report.

    `existing_rows`: rows already in the table this frame is appended to
    (the row-count minimum applies to the table after the load).
    """
    schema, rules = build_schema(config)
    raw = frame.reset_index(drop=True)
    checked, failures = _typed_values(raw, config)
    checked = checked[[c for c in checked.columns if c in config.schema_.columns]]
    try:
        # In place: `checked` is this function's own (copy-on-write) frame, and pandera's own copy
        # of it would add the table's size again to the peak of every ingest.
        clean = schema.validate(checked, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        clean = raw
        failures += _schema_failures(exc.failure_cases, raw, rules, config)
    else:
        failures += _shared_steps(clean, raw, config)
    if len(raw) == 0:
        failures.append(Failure("no rows", None, 0))
    elif len(raw) + existing_rows < config.data.min_rows:
        failures.append(Failure(f"{len(raw) + existing_rows:,} row(s), fewer than data.min_rows "
                                f"({config.data.min_rows:,})", None, len(raw) + existing_rows))
    for name, spec in config.schema_.columns.items():
        if spec.nullable and name in raw:
            empty = raw[name].isna()
            rate = float(empty.mean()) if len(raw) else 0.0
            if rate > config.data.max_null_rate:
                failures.append(Failure(f"{rate:.1%} of the rows are empty, more than data.max_null_rate "
                                        f"({config.data.max_null_rate:.1%})", name, int(empty.sum()),
                                        _examples(raw, name, raw.index[empty].tolist())))
    return clean, ValidationReport(len(raw), failures)
