"""`cd4ml init`: scaffold a project from a template folder shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from cd4ml.errors import ConfigError

TEMPLATES = Path(__file__).parent / "templates"
EXAMPLES = ("groceries", "churn")


def _template_files(source: Path) -> list[Path]:
    return sorted(p.relative_to(source) for p in source.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def init_project(target: Path, example: str | None = None) -> list[Path]:
    """Copy a template into `target` (created if needed); returns the files written.

    Refuses, writing nothing, if any of the template's files already exists in `target`.
    """
    if example is not None and example not in EXAMPLES:
        raise ConfigError(f"unknown example {example!r}; available: {', '.join(EXAMPLES)}", key="--example")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder")
    source = TEMPLATES / (example or "blank")
    files = _template_files(source)
    existing = [str(f) for f in files if (target / f).exists()]
    if existing:
        raise ConfigError(f"{target} already has {', '.join(existing)}; refusing to overwrite: "
                          "move them away or choose another folder")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return files
