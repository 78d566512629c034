"""The project's training table: a Delta Lake table, one version per accepted load.

Each commit carries cd4ml metadata (rows, time range, source, origin) so that
`cd4ml data versions` lists versions without reading their data, and training
can pin and re-read any version exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from cd4ml.errors import Cd4mlError, DataRejected

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


class TrainingTable:
    """A Delta table at `path`, written and read through cd4ml's rules."""

    def __init__(self, path: Path, time_column: str, keys: list[str]) -> None:
        self.path = path
        self.time_column = time_column
        self.keys = keys

    @classmethod
    def for_project(cls, project: "Project") -> "TrainingTable":
        cfg = project.config
        return cls(project.table_path, cfg.time_column, cfg.schema_.keys)

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

    def latest_version(self) -> int:
        return self._open().version()

    def row_count(self) -> int:
        return self._open().to_pyarrow_dataset().count_rows()

    def read(self, version: int | None = None) -> tuple[pd.DataFrame, int]:
        """All rows of one version (latest if None) and the version number read."""
        table = self._open(version)
        return table.to_pyarrow_table().to_pandas(), table.version()

    def write(self, frame: pd.DataFrame, *, mode: Literal["overwrite", "append"], source: str,
              origin: str = "ingest") -> int:
        """Store validated rows as a new version; returns the version number.

        Appending rows whose keys already exist is refused (nothing is written).
        """
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

    def _refuse_duplicate_keys(self, frame: pd.DataFrame) -> None:
        import duckdb

        existing = self._open().to_pyarrow_dataset()  # noqa: F841 - read by DuckDB by name
        incoming = frame[self.keys]  # noqa: F841
        on = " AND ".join(f'e."{k}" = i."{k}"' for k in self.keys)
        dupes = duckdb.sql(f"SELECT i.* FROM incoming i JOIN existing e ON {on}").df()
        if len(dupes):
            raise DataRejected(
                f"{len(dupes)} row(s) repeat keys {self.keys} already in the table, e.g. "
                f"{dupes.head(3).to_dict('records')}; nothing was written")

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
