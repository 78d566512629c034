"""Lineage of a run: the code commit, whether the tree was dirty, package versions."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("cd4ml", "mlflow", "lightgbm", "scikit-learn", "numpy", "pandas", "deltalake", "pandera", "skops")


def git_state(root: Path) -> tuple[str, bool]:
    """(commit sha or 'none', dirty) of the git work tree holding `root`."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "none", True
    # cd4ml's own state folder is not code: it must not make every run look dirty.
    dirty = any(line and not line[3:].startswith(".cd4ml") for line in git("status", "--porcelain").splitlines())
    return commit, dirty


def package_versions() -> dict[str, str]:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
