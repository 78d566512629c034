"""Feature code as a snapshot: copied into a folder, imported under a private name.

Training and serving both import the snapshot, never the live project files,
so a release computes features with exactly the code it was trained with, and
two releases whose feature module has the same name but different code can
live in one process: each snapshot is a package named after its content digest.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cd4ml.errors import ConfigError

TRANSFORMS_MODULE = "_cd4ml_transforms"


def folder_digest(path: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in path order (compiled `__pycache__` aside)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CodeSnapshot:
    """A folder holding cd4ml's transforms and the project's feature modules."""

    path: Path

    @property
    def digest(self) -> str:
        return folder_digest(self.path)

    @property
    def namespace(self) -> str:
        return f"cd4ml_code_{self.digest[:16]}"

    def import_module(self, name: str) -> types.ModuleType:
        """Import `name` (e.g. 'features' or 'pkg.mod') from this snapshot only."""
        ns = self.namespace
        if ns not in sys.modules:
            parent = types.ModuleType(ns)
            parent.__path__ = [str(self.path)]
            sys.modules[ns] = parent
        return importlib.import_module(f"{ns}.{name}")

    def transforms(self) -> types.ModuleType:
        return self.import_module(TRANSFORMS_MODULE)

    def resolve(self, specs: list[str]) -> dict[str, Callable]:
        """'module:function' specs -> callables from this snapshot."""
        out = {}
        for spec in specs:
            module, _, func = spec.partition(":")
            try:
                fn = getattr(self.import_module(module), func)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"cannot load custom feature {spec!r}: {exc}", key="features.custom") from None
            out[spec] = fn
        return out


def take_snapshot(project_root: Path, custom_specs: list[str], dest: Path) -> CodeSnapshot:
    """Copy cd4ml's transforms and each custom feature's top-level module into `dest`."""
    from cd4ml.features import transforms

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(transforms.__file__, dest / f"{TRANSFORMS_MODULE}.py")
    for top in sorted({spec.partition(":")[0].split(".")[0] for spec in custom_specs}):
        as_file, as_pkg = project_root / f"{top}.py", project_root / top
        if as_file.is_file():
            shutil.copyfile(as_file, dest / as_file.name)
        elif (as_pkg / "__init__.py").is_file():
            shutil.copytree(as_pkg, dest / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            raise ConfigError(f"feature module {top!r} not found: expected {as_file} or {as_pkg}/__init__.py",
                              key="features.custom")
    return CodeSnapshot(dest)
