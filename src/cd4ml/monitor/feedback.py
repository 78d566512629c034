"""Actuals ("feedback"): what really happened, for predictions already served.

An actual names the prediction it belongs to in one of two ways:

- by request: `{"request_id": "9f1c...", "record": 0, "unit_sales": 7.0}` (`record` is the
  record's index in a batch request; 0 for single-record requests, the default);
- by the problem's key columns (`schema.keys`): `{"date": "2025-01-02", "store_nbr": 3,
  "item_nbr": 100007, "unit_sales": 7.0}`.

Besides the identity, a record may carry any schema column that is not a request input: the
labels (the target, required, and the oracle column) and lookup attributes (e.g. a new store's
city), which `cd4ml data refresh` needs when the model's own tables do not know the key.
Records are validated like requests (types, ranges, categories) by `serve.schema.FeedbackSchema`
(the service's /feedback uses the same); each error names the record and the field. Valid records
become actuals events, the shape the prediction store compacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.config import ProjectConfig
from cd4ml.serve.schema import FeedbackSchema


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
