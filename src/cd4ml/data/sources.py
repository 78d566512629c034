"""Read a project's raw data: a CSV or Parquet file, or a built-in generator."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from cd4ml.config import Project
from cd4ml.errors import ConfigError, DataRejected


def _groceries(options: dict[str, Any]) -> pd.DataFrame:
    from cd4ml.examples.groceries import GroceryWorld, RegimeChange

    opts = dict(options)
    try:
        start, end = opts.pop("start"), opts.pop("end")
    except KeyError as exc:
        raise ConfigError(f"missing option {exc.args[0]!r}", key="source.options") from None
    changes = [
        RegimeChange(kind=c["kind"], start=dt.date.fromisoformat(str(c["start"])), params=c.get("params", {}))
        for c in opts.pop("regime_changes", [])
    ]
    try:
        world = GroceryWorld(**opts, regime_changes=changes)
        return world.sales(start, end)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="source.options") from None


BUILTIN_GENERATORS: dict[str, Callable[[dict[str, Any]], pd.DataFrame]] = {"groceries": _groceries}


def _generator(name: str, project_root: Path) -> Callable[[dict[str, Any]], pd.DataFrame]:
    if name in BUILTIN_GENERATORS:
        return BUILTIN_GENERATORS[name]
    module, sep, func = name.partition(":")
    if not sep:
        raise ConfigError(f"unknown generator {name!r}: use one of {sorted(BUILTIN_GENERATORS)} or "
                          "'module:function'", key="source.generator")
    # A project's own generator module sits next to its cd4ml.yaml.
    sys.path.insert(0, str(project_root))
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load generator {name!r}: {exc}", key="source.generator") from None
    finally:
        sys.path.remove(str(project_root))


def read_source(project: Project, path: str | None = None) -> tuple[pd.DataFrame, str]:
    """The raw rows and a description of where they came from.

    `path` (a CSV or Parquet file) replaces the configured source for this read.
    Raises DataRejected when the file is empty or unreadable.
    """
    source = project.config.source
    if path is None and source.generator is not None:
        return _generator(source.generator, project.root)(dict(source.options)), f"generator:{source.generator}"
    file = project.resolve(path or source.path)  # type: ignore[arg-type]
    if not file.is_file():
        raise ConfigError(f"data file {file} does not exist", key="source.path")
    try:
        if file.suffix.lower() == ".csv":
            frame = pd.read_csv(file)
        else:
            frame = pd.read_parquet(file)
    except pd.errors.EmptyDataError:
        raise DataRejected(f"{file}: the file is empty (no header, no rows); nothing was written") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataRejected(f"{file}: cannot be read: {exc}; nothing was written") from None
    return frame, str(file)
