"""Request records and actuals records, generated from the project's schema.

One pydantic model per project: a field per input column (and optional lookup
attributes), typed, with the schema's ranges and allowed categories. Records
become column batches (name -> numpy array) for the release's own feature code.
Actuals records (`FeedbackSchema`, see monitor/feedback.py) are checked with the same column fields,
here so that the service's /feedback and `cd4ml feedback` validate them alike.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Optional

import numpy as np
import orjson
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler,
                      TypeAdapter, ValidationError, WithJsonSchema, create_model, model_validator, with_config)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema, to_jsonable_python
from typing_extensions import NotRequired, TypedDict

from cd4ml.config import COLUMN_TYPES, DATE_TYPES, ColumnSpec, ProjectConfig
from cd4ml.periods import PERIODS
from cd4ml.task import Classification

_UNIX_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_INT64 = np.iinfo(np.int64)


class _Allowed:
    """The schema's `categories`: checked after the type's own validation, documented as the JSON
    schema's `enum` (so /docs and /openapi.json show what the service accepts)."""

    def __init__(self, values: list[Any]) -> None:
        self.allowed = frozenset(values)
        self.enum = to_jsonable_python(values)
        self.shown = ", ".join(map(str, values[:20])) + (", ..." if len(values) > 20 else "")

    def check(self, v: Any) -> Any:
        if v is not None and v not in self.allowed:
            raise ValueError(f"{v!r} is not an allowed value (allowed: {self.shown})")
        return v

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "enum": self.enum}


def column_field(spec: ColumnSpec, required: bool) -> tuple[Any, Any]:
    low, high = spec.min, spec.max
    if spec.type == "int":  # past int64 numpy cannot hold a value: refused (422) here, not a 500 in the batch
        low = _INT64.min if low is None else max(low, _INT64.min)
        high = _INT64.max if high is None else min(high, _INT64.max)
    # Bounds on the value's own type, inside Optional: so the JSON schema says `minimum`/`maximum` there.
    # A float is a finite number: "nan" or "inf" (text that pydantic would read as one) is refused, not stored.
    finite = {"allow_inf_nan": False} if spec.type == "float" else {}
    typ: Any = Annotated[COLUMN_TYPES[spec.type].python, Field(ge=low, le=high, **finite)]
    if spec.type in PERIODS:  # a date written as its period: 2024-W05, 2024-05
        period = PERIODS[spec.type]
        typ = Annotated[typ, BeforeValidator(period.start),
                        WithJsonSchema({"type": "string", "pattern": f"^{period.pattern}$", "examples": [period.example],
                                        "description": f"a {period.name}, e.g. {period.example}"})]
    if spec.categories is not None:
        typ = Annotated[typ, _Allowed(spec.categories)]
    if spec.nullable or not required:
        typ = Optional[typ]
    return typ, Field(... if required and not spec.nullable else None)


def record_fields(cfg: ProjectConfig) -> dict[str, tuple[Any, Any]]:
    """A request record's fields: each input column (required unless nullable), then the lookups'
    attributes (optional), as (type, pydantic Field)."""
    fields = {name: column_field(cfg.schema_.columns[name], True) for name in cfg.input_columns}
    for lookup in cfg.features.lookups:
        for name in lookup.columns:
            fields[name] = column_field(cfg.schema_.columns[name], False)
    return fields


def record_model(cfg: ProjectConfig) -> type[BaseModel]:
    """The pydantic model of one prediction request record (what /docs shows)."""
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **record_fields(cfg))


def record_dict(cfg: ProjectConfig) -> type:
    """The request record as a TypedDict of the same fields: validated into a plain dict, without a model
    instance per record, in about half the time (a field that is not required may be left out)."""
    fields = {name: typ if info.is_required() else NotRequired[typ]
              for name, (typ, info) in record_fields(cfg).items()}
    return with_config(ConfigDict(extra="forbid"))(TypedDict("Record", fields))  # type: ignore[misc]


class RequestSchema:
    """Validates parsed JSON (a record or a list of records) and builds column batches."""

    def __init__(self, cfg: ProjectConfig) -> None:
        self.model = record_model(cfg)
        self.adapter = TypeAdapter(list[record_dict(cfg)])  # type: ignore[misc]
        self.types = {name: cfg.schema_.columns[name].type for name in self.model.model_fields}
        self.required = list(cfg.input_columns)

    def validate(self, records: list[Any]) -> list[dict[str, Any]]:
        """Each record's field values (a field left out is absent: read it with `.get`).

        Raises pydantic.ValidationError naming record index and field."""
        return self.adapter.validate_python(records)

    def nulls(self, rows: list[dict[str, Any]]) -> tuple[str, ...]:
        """The fields that are None (or left out) in some row: rows that agree on this give the same batch
        columns and dtypes alone as merged (see `to_batch`)."""
        if len(rows) == 1:
            row = rows[0]
            return tuple(k for k in self.types if row.get(k) is None)
        return tuple(k for k in self.types if any(r.get(k) is None for r in rows))

    def to_batch(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Column batch of validated rows; optional columns only when every row has them."""
        batch = {}
        for name in self.types:
            column = self.column(rows, name)
            if column is not None:
                batch[name] = column
        return batch

    def column(self, rows: list[dict[str, Any]], name: str) -> np.ndarray | None:
        """Field `name` of validated rows as the batch holds it (n,); None for an optional field some row
        lacks."""
        kind = self.types[name]
        values = [r.get(name) for r in rows]
        has_null = None in values
        if has_null and name not in self.required:
            return None
        if has_null:  # nulls in a nullable column travel as NaN, which int arrays cannot hold
            dtype = np.float64 if kind in ("int", "bool") else COLUMN_TYPES[kind].batch
            return np.array([np.nan if v is None else v for v in values], dtype=dtype)
        if kind in DATE_TYPES:  # numpy converts day numbers faster than date objects
            return (np.array([v.toordinal() for v in values], dtype=np.int64) - _UNIX_EPOCH_ORDINAL).view("datetime64[D]")
        return np.array(values, dtype=COLUMN_TYPES[kind].batch)

    def json_schema(self) -> dict[str, Any]:
        """OpenAPI schema of the request body: one record or a list of records."""
        return one_or_many(self.model.model_json_schema())


RECORD_MAX = 2**31 - 1  # the stores keep a record index as int32


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


class FeedbackSchema:
    """Validates actuals records for one project and turns them into actuals events."""

    def __init__(self, cfg: ProjectConfig) -> None:
        cols = cfg.schema_.columns
        self.keys = list(cfg.schema_.keys)
        inputs = set(cfg.input_columns)
        # An actual may carry the covariates' values of its time too (features.history.columns): history reads them.
        covariates = cfg.features.history.columns if cfg.features.history is not None else []
        self.values = [c for c in cols if c not in inputs] + [c for c in covariates if c not in self.keys]
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


def answer_schema(cfg: ProjectConfig) -> dict[str, Any]:
    """OpenAPI schema of /predict's 200 answer for the project's task: one record's or a list's."""
    task = cfg.task
    if isinstance(task, Classification):
        classes = to_jsonable_python(list(task.classes))
        label: dict[str, Any] = {"enum": classes, "description": "the decided class"}
        probabilities: dict[str, Any] = {
            "type": "object", "description": "each class's probability (they sum to 1)",
            "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in task.class_names},
            "required": task.class_names}
        one = {"prediction": label, "probabilities": probabilities}
        many = {"predictions": {"type": "array", "items": label},
                "probabilities": {"type": "array", "items": probabilities}}
    else:
        value = {"type": "number", "description": f"predicted {cfg.target}"}
        one, many = {"prediction": value}, {"predictions": {"type": "array", "items": value}}
    common = {"request_id": {"type": "string"}, "model_version": {"type": "string"},
              "traffic": {"type": "string", "enum": ["test"]}, "client_request_id": {"type": "string"}}
    explanation = {"type": "object", "description": "with explain=true: `base`, `contributions` (input or feature "
                                                    "-> share of the raw score), `raw`, `link`; per class "
                                                    "(`classes`) for a multiclass model",
                   "properties": {"base": {"type": "number"}, "raw": {"type": "number"}, "link": {"type": "string"},
                                  "contributions": {"type": "object", "additionalProperties": {"type": "number"}},
                                  "classes": {"type": "object"}}}
    single = {**common, **one, "fallback": {"type": "boolean"},
              "unknown": {"type": "array", "items": {"type": "string"},
                          "description": "inputs with a value the model never saw (when fallback)"},
              "explanation": explanation}
    batch = {**common, **many, "fallback": {"type": "array", "items": {"type": "boolean"}},
             "explanations": {"type": "array", "items": explanation}}
    return {"anyOf": [{"title": "Answer", "type": "object", "properties": single,
                       "required": ["request_id", "model_version", *one, "fallback"]},
                      {"title": "Answers", "type": "object", "properties": batch,
                       "required": ["request_id", "model_version", *many, "fallback"]}]}


def one_or_many(record: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of a body that is one record (object) or a list of them, as the service reads it."""
    return {"anyOf": [record, {"type": "array", "items": record}]}


def describe_errors(exc: ValidationError, single: bool) -> list[dict[str, Any]]:
    """Validation errors as {record, field, reason, value}: the body of a 422 answer."""
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        record = loc.pop(0) if loc and isinstance(loc[0], int) else None
        field = ".".join(str(p) for p in loc) or None
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "dict_type" and not loc:  # a record that is not a JSON object, worded as before
            reason = "Input should be a valid dictionary or instance of Record"
        out.append({"record": None if single else record, "field": field, "reason": reason,
                    "value": _shown(err.get("input")) if err["type"] != "missing" else None})
    return out


# A 1000-record batch with every field wrong would answer with thousands of errors: the first
# ones show what is wrong, and the count says how much.
ERRORS_SHOWN = 100


def error_body(detail: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A 422 answer: `detail`, the first `ERRORS_SHOWN` errors and, when there are more, their count."""
    body: dict[str, Any] = {"detail": detail, "errors": errors[:ERRORS_SHOWN]}
    if len(errors) > ERRORS_SHOWN:
        body["errors_total"] = len(errors)
    return body


_SHOWN_MAX = 200


def _shown(value: Any) -> Any:
    """A rejected value as the 422 echoes it: as sent when it is small, else a short note.

    The answer must encode whatever came in: JSON nested hundreds of levels deep, or
    an integer beyond 64 bits, cannot be written back as JSON."""
    try:
        text = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        text = b""
    if text and len(text) <= _SHOWN_MAX:
        return value
    kind = type(value).__name__
    return f"({kind} not shown: too large, too deep or not representable in JSON)"
