"""Strict YAML reading for project files and `--set` values: one-line errors with line and column.

PyYAML's `safe_load` keeps the last of two equal keys and prints multi-line errors; a project file
that says `target:` twice is a mistake the user must hear about, not a silent choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cd4ml.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (merge keys `<<` may still be overridden)."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: SafeLoader's own construct_mapping reports it
            break
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first on line {seen})", key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, *, file: str | None = None, key: str | None = None) -> Any:
    """Parse YAML text; a syntax error or a duplicate key is a one-line ConfigError with line and column."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"not valid YAML: {where}{problem}", file=file, key=key) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}", file=file, key=key) from None


def read_yaml_file(path: Path) -> Any:
    """Read a UTF-8 YAML file strictly (see `parse_yaml`); text in another encoding is a ConfigError."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
                          "(save the file as UTF-8)", file=str(path)) from None
    return parse_yaml(text, file=str(path))
