"""`cd4ml init`: scaffold a project from a template folder shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from cd4ml.errors import ConfigError

TEMPLATES = Path(__file__).parent / "templates"
EXAMPLES = ("groceries",)


def init_project(target: Path, example: str | None = None) -> list[Path]:
    """Copy a template into `target` (created if needed; must not hold a cd4ml.yaml)."""
    if example is not None and example not in EXAMPLES:
        raise ConfigError(f"unknown example {example!r}; available: {', '.join(EXAMPLES)}", key="--example")
    if (target / "cd4ml.yaml").exists():
        raise ConfigError(f"{target / 'cd4ml.yaml'} already exists; refusing to overwrite a project")
    source = TEMPLATES / (example or "blank")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file() and ".cd4ml" not in p.parts)
