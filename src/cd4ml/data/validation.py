"""Validation of a dataset against the project's schema, before anything is stored.

A pandera schema is built from cd4ml.yaml (types, ranges, categories, unique
keys), plus row-count and null-rate checks. Every failed check is reported
with its column, the number of failing rows and example rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cd4ml.config import ColumnSpec, ProjectConfig

_DTYPES = {"int": "int64", "float": "float64", "str": str, "bool": "bool",
           "date": "datetime64[us]", "datetime": "datetime64[us]"}
# Null cannot be held by int64 or bool: nullable columns use pandas' nullable types.
_NULLABLE_DTYPES = {"int": "Int64", "bool": "boolean"}
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_EXAMPLES = 3


@dataclass
class Failure:
    check: str
    column: str | None
    rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        return f"{where}: {self.check} failed for {self.rows} row(s)"


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


def _column(spec: ColumnSpec) -> pa.Column:
    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    if spec.categories is not None:
        checks.append(pa.Check.isin(spec.categories))
    dtype = _NULLABLE_DTYPES.get(spec.type, _DTYPES[spec.type]) if spec.nullable else _DTYPES[spec.type]
    return pa.Column(dtype, checks=checks, nullable=spec.nullable, coerce=True)


def build_schema(config: ProjectConfig) -> pa.DataFrameSchema:
    """The pandera schema of the project's table (`validate` drops the columns not in it first)."""
    columns = {name: _column(spec) for name, spec in config.schema_.columns.items()}
    keys = config.schema_.keys or None
    return pa.DataFrameSchema(columns, unique=keys, report_duplicates="all", ordered=False)


def _examples(frame: pd.DataFrame, index: list[Any]) -> list[dict[str, Any]]:
    rows = [i for i in index if i is not None and i in frame.index][:_EXAMPLES]
    return [{"row": int(i), **{k: _plain(v) for k, v in frame.loc[i].items()}} for i in rows]


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


def _exact_values(raw: pd.DataFrame, config: ProjectConfig) -> tuple[pd.DataFrame, list[Failure]]:
    """Reject values that coercion would silently change: 2.5 in an int column, "no" in a bool column.

    Returns the rows for pandera (bool columns as exact booleans, failed rows
    left out: they are reported once, here) and the failures.
    """
    checked = raw.copy(deep=False)  # copy-on-write: replacing its columns leaves `raw` as it was
    failures: list[Failure] = []
    bad_rows = pd.Index([])
    for name, spec in config.schema_.columns.items():
        exact = {"int": "iub", "bool": "b"}.get(spec.type)  # dtype kinds that coerce without loss
        if exact is None or name not in raw or raw[name].dtype.kind in exact:
            continue
        column = raw[name]
        if spec.type == "int":
            numbers = pd.to_numeric(column, errors="coerce")  # text is pandera's coerce_dtype failure
            bad = numbers.notna() & (numbers != np.floor(numbers))
            check = "is a whole number"
        else:
            values = column.map(_as_bool).astype(object)
            bad = ~values.map(lambda v: v is None or isinstance(v, bool)).astype(bool)
            checked[name] = pd.array(values.where(~bad, None).tolist(), dtype="boolean")
            check = "is true, false, 1 or 0"
        if bad.any():
            index = raw.index[bad]
            failures.append(Failure(check, name, len(index), _examples(raw, index.tolist())))
            bad_rows = bad_rows.union(index)
    return (checked.drop(index=bad_rows) if len(bad_rows) else checked), failures  # drop() copies every row


def validate(frame: pd.DataFrame, config: ProjectConfig,
             existing_rows: int = 0) -> tuple[pd.DataFrame, ValidationReport]:
    """Check `frame`; returns the coerced frame (schema columns only) and the report.

    `existing_rows`: rows already in the table this frame is appended to
    (the row-count minimum applies to the table after the load).
    """
    schema = build_schema(config)
    raw = frame.reset_index(drop=True)
    checked, failures = _exact_values(raw, config)
    checked = checked[[c for c in checked.columns if c in config.schema_.columns]]
    try:
        # In place: `checked` is this function's own (copy-on-write) frame, and pandera's own copy
        # of it would add the table's size again to the peak of every ingest.
        clean = schema.validate(checked, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        clean = raw
        cases = exc.failure_cases
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            column = None if pd.isna(column) else str(column)
            if check == "column_in_dataframe":
                for missing in group["failure_case"]:
                    failures.append(Failure("column is missing", str(missing), len(raw)))
                continue
            idx = [i for i in group["index"].tolist() if i is not None and not pd.isna(i)]
            examples = _examples(raw, idx) or [{"value": _plain(v)} for v in group["failure_case"][:_EXAMPLES]]
            failures.append(Failure(str(check), column, max(len(idx), 1), examples))
    if len(raw) == 0:
        failures.append(Failure("has rows", None, 0))
    elif len(raw) + existing_rows < config.data.min_rows:
        failures.append(Failure(f"row count >= {config.data.min_rows}", None, len(raw) + existing_rows))
    for name, spec in config.schema_.columns.items():
        if spec.nullable and name in raw:
            rate = float(raw[name].isna().mean()) if len(raw) else 0.0
            if rate > config.data.max_null_rate:
                failures.append(Failure(f"null rate {rate:.1%} <= {config.data.max_null_rate:.1%}", name,
                                        int(raw[name].isna().sum()), _examples(raw, raw.index[raw[name].isna()].tolist())))
    # Dates are stored as midnight timestamps; a time of day in a 'date' column is a data error.
    if not failures:
        for name, spec in config.schema_.columns.items():
            if spec.type == "date":
                bad = clean[name].notna() & (clean[name] != clean[name].dt.normalize())
                if bad.any():
                    failures.append(Failure("is a date (no time of day)", name, int(bad.sum()),
                                            _examples(raw, raw.index[bad].tolist())))
    return clean, ValidationReport(len(raw), failures)
