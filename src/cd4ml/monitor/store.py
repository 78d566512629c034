"""The prediction store: the service's JSON-lines logs compacted into two append-only Delta tables.

The service writes prediction events (prefix "predictions") and, through /feedback,
actuals events (prefix "actuals") into `serving.log_dir`; `PredictionStore.compact`
appends their new complete lines to `{monitoring.store}/predictions` and
`{monitoring.store}/actuals`, which DuckDB queries through `predictions()`,
`actuals()` or `connect()`.

Tables (one row per predicted record / per actual):

    predictions: request_id string, record int32, served_at timestamp[us, UTC],
                 model_version string, prediction (the task's `output_type`: float64 for regression, the
                 class label's type for classification), probabilities list<float64> (classification only:
                 one per class, in the classes' order), fallback bool, latency_ms float64,
                 inputs struct<one field per `input_columns` column, typed; absent -> null>,
                 traffic string ("live" or "test"; null, read as live, in older lines and tables)
    actuals:     received_at timestamp[us, UTC], request_id string?, record int32?,
                 keys struct<`schema.keys` columns>? (no column without keys),
                 values struct<every non-input schema column?>,
                 source string

Config types map to Arrow (`config.COLUMN_TYPES`) as int -> int64, float -> float64, str -> string,
bool -> bool, date -> date32 and datetime -> timestamp[us], week and month -> date32 (the date each
period starts); values are coerced the way the service validated them (pydantic lax mode: "5" is an int 5).

Durability contract:

- After SIGTERM nothing is missing: the service closes its log on shutdown, which writes
  everything queued and fsyncs.
- After SIGKILL at most the events of the log writer's last flush interval
  (`PredictionLog(flush_interval=0.5)` s by default) are lost: they were still queued in memory.
  A line torn by the kill stays unread, being incomplete.
- Compaction is exactly-once: each table's commit carries, in its commit metadata
  ("cd4ml.offsets" -> JSON {file name: byte offset}), how far every log file has been read, and
  the next compaction starts from the offsets of the latest commit. Rows and offsets land in one
  atomic Delta commit, so a crash at any point neither duplicates nor loses rows. Compactions
  (and `append_actuals`) from any number of threads or processes are serialized by an fcntl lock
  in the store folder.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from pydantic import TypeAdapter, ValidationError

from cd4ml.config import COLUMN_TYPES
from cd4ml.periods import PERIODS, Period
from cd4ml.errors import Cd4mlError, DataRejected
from cd4ml.locking import exclusive_lock
from cd4ml.serve.predlog import log_files
from cd4ml.task import Classification

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset

    from cd4ml.config import Project

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
ACTUALS = "actuals"
_OFFSETS = "cd4ml.offsets"
_SOURCE = "cd4ml.source"
_MAX_PROBLEMS = 20  # problem messages kept per compaction; `bad` counts all of them
_UTC_US = pa.timestamp("us", tz="UTC")


@dataclass
class CompactResult:
    """What one `compact()` did: new rows per table, log files with new lines, malformed lines skipped."""

    predictions: int = 0
    actuals: int = 0
    files: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)  # "file:line: reason", the first few

    def _problem(self, message: Callable[[], str]) -> None:
        # A message may read the file to find a line number: only the kept ones are made.
        self.bad += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message())


@dataclass(frozen=True)
class _Field:
    """A table column taken from event key `name`; `children` make it a struct read from a JSON object."""

    name: str
    type: pa.DataType
    required: bool = False
    children: tuple["_Field", ...] = ()
    period: Period | None = None  # a week or month column: its values are the periods' text

    @property
    def arrow(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=not self.required)


def _struct(name: str, columns: list[tuple[str, str]], required: bool) -> _Field:
    children = tuple(_Field(c, pa.type_for_alias(COLUMN_TYPES[kind].arrow), period=PERIODS.get(kind))
                     for c, kind in columns)
    return _Field(name, pa.struct([c.arrow for c in children]), required, children)


@functools.cache
def _adapter(t: pa.DataType) -> TypeAdapter:
    py: Any = next(py for test, py in [(pa.types.is_list, list[float]), (pa.types.is_boolean, bool),
                                       (pa.types.is_integer, int),
                                        (pa.types.is_floating, float), (pa.types.is_string, str),
                                        (pa.types.is_date, dt.date), (pa.types.is_timestamp, dt.datetime)]
                    if test(t))
    return TypeAdapter(Optional[py])


def _typed(values: list[Any], t: pa.DataType, where: str, bad: dict[int, str]) -> pa.Array:
    """`values` (JSON values, None = null) as an Arrow array of type `t`; unconvertible ones become
    null and are reported in `bad` (row index -> reason)."""
    try:
        if pa.types.is_date(t) or pa.types.is_timestamp(t):  # JSON carries them as ISO text
            return pa.array(values, pa.string()).cast(t)
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # OverflowError: an int past int64
        pass
    # Slow path, only for a column holding something the fast path refused: the service's own
    # lax rules ("5" -> 5, "2024-01-01T00:00" -> date) value by value.
    adapter, out = _adapter(t), []
    for i, v in enumerate(values):
        try:
            out.append(pa.array([adapter.validate_python(v)], t))
        except (ValidationError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad.setdefault(i, f"{where}: {v!r} is not a valid {t}")
            out.append(pa.nulls(1, t))
    return pa.concat_arrays(out)


def _period_start(period: Period, value: Any) -> Any:
    """A period's text as the ISO date it starts on; anything else as it is (for `_typed` to judge)."""
    try:
        return None if value is None else period.start(value).isoformat()
    except ValueError:
        return value


def _column(rows: list[dict[str, Any]], f: _Field, bad: dict[int, str], where: str = "") -> pa.Array:
    where = f"{where}{f.name}"
    values = [r.get(f.name) for r in rows]
    if f.children:
        is_obj = [type(v) is dict for v in values]
        for i, (v, ok) in enumerate(zip(values, is_obj)):
            if v is not None and not ok:
                bad.setdefault(i, f"{where}: {v!r} is not a JSON object")
        objects = [v if ok else {} for v, ok in zip(values, is_obj)]
        children = [_column(objects, c, bad, where + ".") for c in f.children]
        missing = pa.array(is_obj, pa.bool_())
        array = pa.StructArray.from_arrays(children, fields=[c.arrow for c in f.children], mask=pc.invert(missing))
    else:
        array = _typed(values if f.period is None else [_period_start(f.period, v) for v in values], f.type, where, bad)
    if f.required and array.null_count:
        for i in pc.indices_nonzero(array.is_null()).to_pylist():
            bad.setdefault(i, f"{where} is missing")
    return array


def _table(events: list[Any], fields: list[_Field]) -> tuple[pa.Table, dict[int, str]]:
    """Typed rows of the well-formed `events`, and the malformed ones (event index -> reason)."""
    bad = {i: "not a JSON object" for i, e in enumerate(events) if type(e) is not dict}
    rows = [e if type(e) is dict else {} for e in events]
    # Arrow does not enforce "not null" here; the filter removes the rows that break it.
    table = pa.Table.from_arrays([_column(rows, f, bad) for f in fields], schema=pa.schema([f.arrow for f in fields]))
    if bad:
        table = table.filter(pa.array([i not in bad for i in range(len(events))], pa.bool_()))
    return table, bad


@dataclass(frozen=True)
class _Chunk:
    """The new complete lines of one log file: `data` starts at byte `start` and ends with a newline."""

    path: Path
    start: int
    data: bytes

    def line_number(self, index: int) -> int:
        """1-based line number in the file of this chunk's line `index` (reads the file's head: rare path)."""
        with self.path.open("rb") as f:
            return f.read(self.start).count(b"\n") + index + 1


class PredictionStore:
    """The project's prediction store under `project.monitor_dir`, fed from `serving.log_dir`."""

    def __init__(self, project: "Project") -> None:
        cfg = project.config
        cols = cfg.schema_.columns
        inputs = list(cfg.input_columns)
        self.log_dir = project.resolve(cfg.serving.log_dir)
        self.directory = project.monitor_dir
        self.predictions_path = self.directory / PREDICTIONS
        self.actuals_path = self.directory / ACTUALS
        self._prediction_fields = [
            _Field("request_id", pa.string(), True), _Field("record", pa.int32(), True),
            _Field("time", _UTC_US, True), _Field("model_version", pa.string()),
            _Field("output", cfg.task.output_type()),
            # A classifier's probability vector: a typed list column, so DuckDB and pandas read numbers.
            *([_Field("probabilities", pa.list_(pa.float64()), True)] if isinstance(cfg.task, Classification) else []),
            _Field("fallback", pa.bool_()), _Field("latency_ms", pa.float64()),
            _struct("inputs", [(c, cols[c].type) for c in inputs], True),
            _Field("traffic", pa.string())]  # "live" or "test"; null in lines logged before it existed
        self._actual_fields = [
            _Field("received_at", _UTC_US, True), _Field("request_id", pa.string()), _Field("record", pa.int32()),
            # Without schema.keys there is no keys column: Parquet cannot store an empty struct.
            *([_struct("keys", [(c, cols[c].type) for c in cfg.schema_.keys], False)] if cfg.schema_.keys else []),
            _struct("values", [(c, spec.type) for c, spec in cols.items() if c not in inputs], True),
            _Field("source", pa.string(), True)]

    # -- writing ---------------------------------------------------------------------------------

    def compact(self) -> CompactResult:
        """Append the log lines completed since the last compaction: at most one Delta version per table."""
        result = CompactResult()
        with exclusive_lock(self.directory / ".lock"):
            result.predictions = self._compact(PREDICTIONS, self.predictions_path, self._predictions, result)
            result.actuals = self._compact(ACTUALS, self.actuals_path, self._actuals, result)
        if result.bad:
            log.warning("prediction store: skipped %d malformed line(s), e.g. %s", result.bad, result.problems[0])
        return result

    def append_actuals(self, events: list[dict[str, Any]]) -> int:
        """Append actuals events given directly (same shape as the log's); returns the rows added.

        All or nothing: a malformed event raises DataRejected naming its index and field.
        """
        if not events:
            return 0
        table, bad = self._actuals(events)
        if bad:
            shown = "; ".join(f"event {i}: {reason}" for i, reason in sorted(bad.items())[:5])
            raise DataRejected(f"{len(bad)} of {len(events)} actuals event(s) are malformed, nothing was "
                               f"stored: {shown}")
        with exclusive_lock(self.directory / ".lock"):
            # The offsets move forward unchanged, so the latest commit always holds them.
            self._write(self.actuals_path, table, self._offsets(self.actuals_path), "append_actuals")
        return table.num_rows

    def _predictions(self, events: list[Any]) -> tuple[pa.Table, dict[int, str]]:
        table, bad = _table(events, self._prediction_fields)
        return table.rename_columns({"time": "served_at", "output": "prediction"}), bad

    def _actuals(self, events: list[Any]) -> tuple[pa.Table, dict[int, str]]:
        table, bad = _table(events, self._actual_fields)
        unidentified = table["request_id"].is_null()
        if "keys" in table.column_names:
            unidentified = pc.and_(unidentified, table["keys"].is_null())
        if pc.any(unidentified).as_py():
            # An actual that names neither its request nor its keys can never be matched.
            kept = [i for i in range(len(events)) if i not in bad]
            for j in pc.indices_nonzero(unidentified).to_pylist():
                bad[kept[j]] = "neither request_id nor keys is given"
            table = table.filter(pc.invert(unidentified))
        return table, bad

    def _compact(self, prefix: str, path: Path, to_table: Callable[[list[Any]], tuple[pa.Table, dict[int, str]]],
                 result: CompactResult) -> int:
        offsets = self._offsets(path)
        chunks, new_offsets = self._read_new(prefix, offsets, result)
        if not chunks:
            return 0
        events: list[Any] = []
        starts, unparsable = [], set()
        for chunk in chunks:
            starts.append(len(events))
            lines = chunk.data.split(b"\n")[:-1]
            try:
                events.extend([orjson.loads(line) for line in lines])
            except orjson.JSONDecodeError:
                for index, line in enumerate(lines):
                    try:
                        events.append(orjson.loads(line))
                    except orjson.JSONDecodeError as e:
                        unparsable.add(len(events))
                        events.append(None)
                        result._problem(lambda e=e, index=index: f"{chunk.path}:{chunk.line_number(index)}: "
                                                                  f"not a JSON line: {e}")
        table, bad = to_table(events)
        for i, reason in sorted(bad.items()):
            if i not in unparsable:
                k = bisect.bisect_right(starts, i) - 1
                result._problem(lambda: f"{chunks[k].path}:{chunks[k].line_number(i - starts[k])}: {reason}")
        self._quarantine(prefix, chunks, starts, sorted(set(bad) | unparsable))
        # Committed even when every new line was malformed: the offsets must move past them.
        self._write(path, table, new_offsets, "compact")
        return table.num_rows

    def _quarantine(self, prefix: str, chunks: list[_Chunk], starts: list[int], indices: list[int]) -> None:
        """Keep the lines compaction skips, as they were, in `quarantine/<prefix>.jsonl` (one JSON line
        each: file, line text): out of every report's way, never lost. A crash before the commit that
        follows quarantines them again on the next compaction."""
        if not indices:
            return
        lines = [chunk.data.split(b"\n")[:-1] for chunk in chunks]
        out = bytearray()
        for i in indices:
            k = bisect.bisect_right(starts, i) - 1
            out += orjson.dumps({"file": chunks[k].path.name,
                                 "line": lines[k][i - starts[k]].decode("utf-8", "replace")}) + b"\n"
        folder = self.directory / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{prefix}.jsonl").open("ab") as f:
            f.write(out)

    def _read_new(self, prefix: str, offsets: dict[str, int],
                  result: CompactResult) -> tuple[list[_Chunk], dict[str, int]]:
        """Each log file's complete lines past its offset, and the offsets after them.

        Offsets of files no longer in the folder are dropped, so the metadata does not grow
        with every file retention ever removed.
        """
        chunks, new_offsets = [], {}
        for path in log_files(self._log_files(), prefix):
            start = new_offsets[path.name] = offsets.get(path.name, 0)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:  # removed by retention since the listing
                del new_offsets[path.name]
                continue
            except OSError as e:
                raise Cd4mlError(f"cannot read prediction log {path}: {e}") from e
            if not data and path.stat().st_size < start:
                result._problem(lambda: f"{path}: shorter than the {start} bytes already compacted (truncated or "
                                "replaced?); skipped")
            end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
            if end:
                chunks.append(_Chunk(path, start, data[:end]))
                new_offsets[path.name] = start + end
        result.files += len(chunks)
        return chunks, new_offsets

    def quarantined(self) -> dict[str, int]:
        """Lines set aside by compaction so far, per table."""
        out = {}
        for prefix in (PREDICTIONS, ACTUALS):
            try:
                with (self.directory / "quarantine" / f"{prefix}.jsonl").open("rb") as f:
                    out[prefix] = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            except FileNotFoundError:
                out[prefix] = 0
        return out

    def _log_files(self) -> list[Path]:
        try:
            return list(self.log_dir.iterdir())
        except FileNotFoundError:
            return []

    def _write(self, path: Path, table: pa.Table, offsets: dict[str, int], source: str) -> None:
        meta = {_OFFSETS: orjson.dumps(offsets).decode(), _SOURCE: source}
        try:
            # "merge": an input column added to cd4ml.yaml widens the struct instead of failing.
            write_deltalake(str(path), table, mode="append", schema_mode="merge",
                            commit_properties=CommitProperties(custom_metadata=meta))
        except DeltaError as e:
            raise Cd4mlError(f"cannot append {table.num_rows} row(s) to the store table {path} (did a column "
                             f"type in cd4ml.yaml change?); nothing was stored: {e}") from e

    @staticmethod
    def _offsets(path: Path) -> dict[str, int]:
        """The offsets of the latest commit carrying them ({} for no table)."""
        if not DeltaTable.is_deltatable(str(path)):
            return {}
        table = DeltaTable(str(path))
        # Our commits all carry them; the full history is read only after someone else's commit
        # (an OPTIMIZE, say), which must not reset the offsets and duplicate every row.
        for limit in (1, None):
            for entry in table.history(limit):
                if _OFFSETS in entry:
                    return orjson.loads(entry[_OFFSETS])
        return {}

    # -- reading ---------------------------------------------------------------------------------

    def predictions(self) -> "pyarrow.dataset.Dataset | None":
        """The predictions table as a dataset (None before the first compaction)."""
        return self._dataset(self.predictions_path)

    def actuals(self) -> "pyarrow.dataset.Dataset | None":
        """The actuals table as a dataset (None before any actual was stored)."""
        return self._dataset(self.actuals_path)

    @staticmethod
    def _dataset(path: Path) -> "pyarrow.dataset.Dataset | None":
        if not DeltaTable.is_deltatable(str(path)):
            return None
        return DeltaTable(str(path)).to_pyarrow_dataset()

    def connect(self) -> "duckdb.DuckDBPyConnection":
        """A DuckDB connection with views `predictions` and `actuals` (empty, typed, until stored)."""
        import duckdb

        con = duckdb.connect()
        for name, data, empty in [(PREDICTIONS, self.predictions(), self._predictions),
                                  (ACTUALS, self.actuals(), self._actuals)]:
            con.register(name, data if data is not None else empty([])[0])
        return con
