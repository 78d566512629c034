"""The project's training table: a Delta Lake table, one version per accepted load.

Each commit carries cd4ml metadata (rows, time range, source, origin: `ingest` or
`production` for rows fed back by `cd4ml data refresh`) so that
`cd4ml data versions` lists versions without reading their data, and training
can pin and re-read any version exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from cd4ml.errors import Cd4mlError, DataRejected
from cd4ml.locking import exclusive_lock

if TYPE_CHECKING:
    from cd4ml.config import Project

_META = "cd4ml."


@dataclass(frozen=True)
class TableVersion:
    version: int
    timestamp: dt.datetime
    operation: str
    rows: int | None
    time_min: str | None
    time_max: str | None
    source: str | None
    origin: str | None


def _kind(t: pa.DataType) -> str:
    """cd4ml's name for an Arrow type; types of one kind differ only in width or unit, which appending casts."""
    kinds = {"int": pa.types.is_integer, "float": pa.types.is_floating, "bool": pa.types.is_boolean,
             "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
             "datetime": lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "null": pa.types.is_null}
    return next((kind for kind, test in kinds.items() if test(t)), str(t))


def _in_order(frame: pd.DataFrame, columns: list[str]) -> bool:
    """Whether the rows are already sorted by `columns`, so a stable sort would keep them as they are.

    Only plain numbers and times without missing values are compared; anything else counts as unsorted.
    """
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        return False
    tied = np.ones(max(len(frame) - 1, 0), dtype=bool)  # pairs of rows equal in every column so far
    for c in columns:
        values = frame[c].to_numpy()
        if values.dtype.kind not in "biufmM" or frame[c].hasnans:
            return False
        before, after = values[:-1], values[1:]
        if (tied & (before > after)).any():
            return False
        tied &= before == after
    return True


class TrainingTable:
    """A Delta table at `path`, written and read through cd4ml's rules."""

    def __init__(self, path: Path, time_column: str, keys: list[str], float_columns: list[str] | None = None) -> None:
        self.path = path
        self.time_column = time_column
        self.keys = keys
        self.float_columns = float_columns or []

    @classmethod
    def for_project(cls, project: "Project") -> "TrainingTable":
        cfg = project.config
        # Features are float64 anyway; numpy int and bool arrays cannot hold a null, NaN can.
        nullable = [name for name, spec in cfg.schema_.columns.items()
                    if spec.nullable and spec.type in ("int", "bool")]
        return cls(project.table_path, cfg.time_column, cfg.schema_.keys, nullable)

    def _open(self, version: int | None = None) -> DeltaTable:
        try:
            table = DeltaTable(str(self.path))
        except TableNotFoundError:
            raise Cd4mlError(f"no data table at {self.path} yet: run 'cd4ml data ingest' first") from None
        if version is not None:
            if not 0 <= version <= table.version():
                raise Cd4mlError(f"data version {version} does not exist (latest is {table.version()})")
            table.load_as_version(version)
        return table

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(str(self.path))

    def version_number(self, version: int | None = None) -> int:
        """The version `read(version)` would read (the latest if None), without reading data."""
        return self._open(version).version()

    def row_count(self) -> int:
        return self._open().to_pyarrow_dataset().count_rows()

    def read(self, version: int | None = None) -> tuple[pd.DataFrame, int]:
        """All rows of one version (latest if None), sorted by time then keys, and the version number read.

        The sort pins the row order (so fitting is deterministic) and makes the
        last row of a key its latest, which attribute lookups rely on.
        """
        table = self._open(version)
        # Each Arrow column is released as soon as it is converted: the table is never held twice.
        frame = table.to_pyarrow_table().to_pandas(self_destruct=True, split_blocks=True)
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed buffers (~0.7x the table)
        for name in self.float_columns:
            if name in frame:
                frame[name] = frame[name].astype("float64")
        order = [c for c in dict.fromkeys([self.time_column, *self.keys]) if c in frame]
        if _in_order(frame, order):  # as written by ingest: sorting would only copy the whole table
            return frame, table.version()
        return frame.sort_values(order, kind="stable", ignore_index=True), table.version()

    def append_mismatch(self, frame: pd.DataFrame) -> dict[str, str]:
        """Per column, how `frame` differs from the table's columns and types (empty if it can be appended).

        Delta refuses other columns, and silently casts other types (2.5 -> 2).
        """
        have = {f.name: _kind(f.type) for f in pa.schema(self._open().schema().to_arrow())}
        incoming = {f.name: _kind(f.type) for f in pa.Table.from_pandas(frame, preserve_index=False).schema}
        out = {c: "is in the table but not in this load" for c in have if c not in incoming}
        for c, kind in incoming.items():
            if c not in have:
                out[c] = "is not in the table"
            elif kind != have[c] and kind != "null":  # an all-null column fits any type
                out[c] = f"is {have[c]} in the table, {kind} in this load"
        return out

    def write(self, frame: pd.DataFrame, *, mode: Literal["overwrite", "append"], source: str,
              origin: str = "ingest") -> int:
        """Store validated rows as a new version; returns the version number.

        Appending rows whose keys already exist is refused (nothing is written). Writers of one table
        take turns: Delta lets two appends commit side by side, so a key check that ran before the
        other's commit would let duplicates in.
        """
        with exclusive_lock(self.path.parent / f".{self.path.name}.lock"):
            return self._write(frame, mode=mode, source=source, origin=origin)

    def _write(self, frame: pd.DataFrame, *, mode: Literal["overwrite", "append"], source: str, origin: str) -> int:
        if mode == "append" and self.exists() and self.keys:
            self._refuse_duplicate_keys(frame)
        times = [str(t) for t in (frame[self.time_column].min(), frame[self.time_column].max()) if len(frame)]
        rows = len(frame)
        if mode == "append" and self.exists():
            # Versions describe the whole table, not just the rows this commit added.
            rows += self.row_count()
            before = self.versions()[0]
            times += [t for t in (before.time_min, before.time_max) if t]
        meta = {
            f"{_META}rows": str(rows),
            f"{_META}time_min": min(times) if times else "",
            f"{_META}time_max": max(times) if times else "",
            f"{_META}source": source,
            f"{_META}origin": origin,
        }
        data = pa.Table.from_pandas(frame, preserve_index=False)
        write_deltalake(str(self.path), data, mode=mode,
                        schema_mode="overwrite" if mode == "overwrite" else None,
                        commit_properties=CommitProperties(custom_metadata=meta))
        return self._open().version()

    def dataset(self) -> "pa.dataset.Dataset":
        """The latest version as a pyarrow dataset (for DuckDB queries that need not load it all)."""
        return self._open().to_pyarrow_dataset()

    def rows_by_key(self, frame: pd.DataFrame, keys: list[str], *, stored: bool) -> pd.DataFrame:
        """The rows of `frame` whose `keys` the latest version holds (`stored`) or does not hold (not `stored`),
        found by DuckDB without loading the table."""
        import duckdb

        on = " AND ".join(f'e."{k}" = i."{k}"' for k in keys)
        # A connection of its own, closed here: DuckDB's default one would live until the interpreter's
        # teardown, where a DuckDB connection can abort the process (duckdb/duckdb#13904).
        with duckdb.connect() as con:
            con.register("incoming", frame)
            con.register("existing", self.dataset())
            return con.sql(f"SELECT i.* FROM incoming i {'SEMI' if stored else 'ANTI'} JOIN existing e ON {on}").df()

    def _refuse_duplicate_keys(self, frame: pd.DataFrame) -> None:
        dupes = self.rows_by_key(frame[self.keys], self.keys, stored=True)
        if len(dupes):
            examples = "; ".join(", ".join(f"{k}={v}" for k, v in row.items())
                                 for row in dupes.head(3).astype(str).to_dict("records"))
            raise DataRejected(f"{len(dupes)} row(s) repeat keys ({', '.join(self.keys)}) already in the table, "
                               f"e.g. {examples}; nothing was written")

    def versions(self) -> list[TableVersion]:
        """Every version, newest first."""
        out = []
        for entry in self._open().history():
            rows = entry.get(f"{_META}rows")
            out.append(TableVersion(
                version=int(entry["version"]),
                timestamp=dt.datetime.fromtimestamp(entry["timestamp"] / 1000, tz=dt.timezone.utc),
                operation=str(entry.get("operation", "")),
                rows=int(rows) if rows else None,
                time_min=entry.get(f"{_META}time_min") or None,
                time_max=entry.get(f"{_META}time_max") or None,
                source=entry.get(f"{_META}source"),
                origin=entry.get(f"{_META}origin"),
            ))
        return out
