"""Actuals ("feedback"): what really happened, for predictions already served.

An actual names the prediction it belongs to in one of two ways:

- by request: `{"request_id": "9f1c...", "record": 0, "unit_sales": 7.0}` (`record` is the
  record's index in a batch request; 0 for single-record requests, the default);
- by the problem's key columns (`schema.keys`): `{"date": "2025-01-02", "store_nbr": 3,
  "item_nbr": 100007, "unit_sales": 7.0}`.

Besides the identity, a record may carry any schema column that is not a request input: the
labels (the target, required, and the oracle column) and lookup attributes (e.g. a new store's
city), which `cd4ml data refresh` needs when the model's own tables do not know the key.
Records are validated like requests (types, ranges, categories); each error names the record
and the field. Valid records become actuals events, the shape the prediction store compacts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from cd4ml.config import ProjectConfig
from cd4ml.serve.schema import column_field


RECORD_MAX = 2**31 - 1  # the stores keep a record index as int32


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


class FeedbackSchema:
    """Validates actuals records for one project and turns them into actuals events."""

    def __init__(self, cfg: ProjectConfig) -> None:
        cols = cfg.schema_.columns
        self.keys = list(cfg.schema_.keys)
        inputs = set(cfg.input_columns)
        self.values = [c for c in cols if c not in inputs]
        self.target = cfg.target
        fields: dict[str, Any] = {"request_id": (Optional[str], Field(None, min_length=1, max_length=200)),
                                  "record": (Optional[int], Field(None, ge=0, le=RECORD_MAX))}
        for name in dict.fromkeys([*self.keys, *self.values]):
            fields[name] = column_field(cols[name], False)
        keys, target = self.keys, self.target

        class _Identity(BaseModel):
            model_config = ConfigDict(extra="forbid")

            @model_validator(mode="after")
            def _identified(self) -> "_Identity":
                if getattr(self, target) is None:
                    raise ValueError(f"the target {target!r} is required")
                if self.request_id is None:
                    missing = [k for k in keys if getattr(self, k) is None]
                    if not keys:
                        raise ValueError("give request_id (the project has no schema.keys to match by)")
                    if missing:
                        raise ValueError(f"give request_id, or every key column ({', '.join(keys)}); "
                                         f"missing: {', '.join(missing)}")
                return self

        self.model = create_model("Actual", __base__=_Identity, **fields)
        self.adapter = TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def events(self, records: list[Any], *, source: str, received_at: dt.datetime | None = None
               ) -> list[dict[str, Any]]:
        """Validated actuals events; raises pydantic.ValidationError naming the record and field."""
        parsed = self.adapter.validate_python(records)
        now = (received_at or dt.datetime.now(dt.timezone.utc)).isoformat()
        out = []
        for rec in parsed:
            by_request = rec.request_id is not None
            out.append({
                "received_at": now,
                "request_id": rec.request_id,
                "record": (rec.record or 0) if by_request else None,
                "keys": None if by_request else {k: _iso(getattr(rec, k)) for k in self.keys},
                "values": {c: _iso(getattr(rec, c)) for c in self.values if getattr(rec, c) is not None},
                "source": source,
            })
        return out


def read_actuals(cfg: ProjectConfig, file: Path) -> list[dict[str, Any]]:
    """Actuals events from a CSV, Parquet or JSON-lines file; DataRejected names the bad rows and fields."""
    import pandas as pd
    from pydantic import ValidationError

    from cd4ml.errors import DataRejected

    file = Path(file)
    if not file.is_file():
        raise DataRejected(f"{file}: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".csv":
            # Text as text: pandas would read "007" as 7 and dates as objects of its own.
            frame = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(file, lines=suffix != ".json", dtype=False, convert_dates=False)
        else:
            raise DataRejected(f"{file}: use a .csv, .parquet or .jsonl file")
    except (ValueError, OSError) as exc:
        raise DataRejected(f"{file}: cannot be read: {exc}") from None
    records = [{k: v for k, v in rec.items() if not _missing(v)} for rec in frame.to_dict("records")]
    if not records:
        raise DataRejected(f"{file}: no rows")
    try:
        return FeedbackSchema(cfg).events(records, source=f"file:{file.name}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first_row = 2 if suffix == ".csv" else 1  # CSV rows count from the line after the header
        shown = "; ".join(
            f"row {first_row + int(e['loc'][0])}"
            + (f", {'.'.join(map(str, e['loc'][1:]))}" if len(e["loc"]) > 1 else "")
            + f": {'unknown field' if e['type'] == 'extra_forbidden' else e['msg'].removeprefix('Value error, ')}"
            for e in errors[:10])
        raise DataRejected(f"{file}: {len(errors)} invalid value(s), nothing stored: {shown}"
                           + ("; ..." if len(errors) > 10 else "")) from None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
