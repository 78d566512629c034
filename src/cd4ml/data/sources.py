"""Read a project's raw data: a CSV or Parquet file, or a built-in generator."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from cd4ml.config import Project
from cd4ml.errors import ConfigError, DataRejected


def _range_options(options: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """A built-in world's required `start` and `end`, and its other options."""
    opts = dict(options)
    try:
        return opts.pop("start"), opts.pop("end"), opts
    except KeyError as exc:
        raise ConfigError(f"missing option {exc.args[0]!r}", key="source.options") from None


@contextmanager
def _option_errors() -> Iterator[None]:
    # A world refuses an unknown option (TypeError) or a bad value (ValueError): the project file's error.
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key="source.options") from None


def _groceries(options: dict[str, Any]) -> pd.DataFrame:
    from cd4ml.examples.groceries import GroceryWorld, RegimeChange

    start, end, opts = _range_options(options)
    changes = [
        RegimeChange(kind=c["kind"], start=dt.date.fromisoformat(str(c["start"])), params=c.get("params", {}))
        for c in opts.pop("regime_changes", [])
    ]
    with _option_errors():
        return GroceryWorld(**opts, regime_changes=changes).sales(start, end)


def _churn(options: dict[str, Any]) -> pd.DataFrame:
    from cd4ml.examples.churn import ChurnWorld

    start, end, opts = _range_options(options)
    with _option_errors():  # the books open in the first month asked for
        return ChurnWorld(**opts, start=start).history(start, end)


BUILTIN_GENERATORS: dict[str, Callable[[dict[str, Any]], pd.DataFrame]] = {"groceries": _groceries, "churn": _churn}


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
