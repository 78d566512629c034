"""A new project's embedded MLflow store starts as a copy of an empty store MLflow made once.

MLflow builds a new SQLite store by running its whole chain of schema migrations, seconds of CPU
for every new project (the store rows of benchmarks/results/startup.md). For one MLflow version the
empty store is always the same store, so MLflow makes it once per machine in the user's cache
folder and each new project gets a copy. cd4ml neither reads nor writes the store's tables: MLflow opens the copy
as any store of its own version. Its Default experiment, which cd4ml never uses, points at the
cache folder's `mlruns`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

# Run in a child with the cache folder as its working directory: the store MLflow makes there is
# the same whichever project asked first, and this process keeps no engine on the template.
_MAKE = ("import sys, logging; logging.disable(logging.INFO); from mlflow import MlflowClient; "
         "MlflowClient(tracking_uri='sqlite:///' + sys.argv[1]).search_experiments()")


def cache_folder() -> Path:
    """`$XDG_CACHE_HOME/cd4ml`, else `~/.cache/cd4ml`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cd4ml"


def seed(db: Path) -> bool:
    """Put a copy of the empty store at `db` if no file is there; False if MLflow must make it.

    Never replaces a file at `db` (another command may have just made the store); any failure
    leaves `db` absent, and MLflow then creates the store as it always did.
    """
    if db.exists():
        return False
    try:
        template = _template()
        if template is None:
            return False
        partial = _beside(db)
        try:
            shutil.copyfile(template, partial)
            os.link(partial, db)  # fails if `db` appeared meanwhile: that store is kept
        finally:
            partial.unlink(missing_ok=True)
    except (OSError, RuntimeError, subprocess.SubprocessError):  # RuntimeError: no home folder
        return False
    return True


def _template() -> Path | None:
    """The empty store of the installed MLflow version, made by MLflow on first use.

    Its name carries its content's digest: a file that no longer matches (a stray write, a disk
    fault, another store put in its place) is removed and made again.
    """
    from importlib.metadata import version

    folder = cache_folder()
    stem = f"mlflow-{version('mlflow')}-empty"
    for made in sorted(folder.glob(f"{stem}-*.db")):
        if made.stem == f"{stem}-{_digest(made)}":
            return made
        made.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    partial = _beside(folder / f"{stem}.db")
    try:
        made = subprocess.run([sys.executable, "-c", _MAKE, partial.name], cwd=folder, capture_output=True,
                              timeout=300)
        if made.returncode != 0:
            return None
        template = folder / f"{stem}-{_digest(partial)}.db"
        os.replace(partial, template)  # whole or absent
    finally:
        partial.unlink(missing_ok=True)
    return template


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _beside(path: Path) -> Path:
    """A hidden name next to `path` that no other command or thread uses."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}")
