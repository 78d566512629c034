"""`cd4ml init`: scaffold a project from a template folder shipped in the package; `cd4ml ci init`: its
pipeline in the team's CI system (`ci/`: one file per system, calling the jobs of `ci/cd4ml.sh`)."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from cd4ml.errors import ConfigError

TEMPLATES = Path(__file__).parent / "templates"
EXAMPLES = ("groceries", "churn")
CI = Path(__file__).parent / "ci"
# Each CI system's pipeline file: where it goes in a project, and its template here.
CI_FILES = {"github": (".github/workflows/cd4ml.yml", "github.yml"), "gitlab": (".gitlab-ci.yml", "gitlab-ci.yml"),
            "jenkins": ("Jenkinsfile", "Jenkinsfile")}
CI_JOBS, CI_REQUIREMENTS = "ci/cd4ml.sh", "ci/requirements.txt"


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


def init_ci(target: Path, system: str, install: str | None = None) -> list[Path]:
    """Write `system`'s pipeline into project folder `target`: its pipeline file, `ci/cd4ml.sh` (the jobs)
    and `ci/requirements.txt` (what a job installs: `install`, default this version of cd4ml from the
    package index). Refuses, writing nothing, if any of them exists; returns the files written."""
    if system not in CI_FILES:
        raise ConfigError(f"unknown CI system {system!r}; available: {', '.join(CI_FILES)}", key="--ci")
    if not (target / "cd4ml.yaml").is_file():
        raise ConfigError(f"{target} has no cd4ml.yaml: run `cd4ml init` first (or `cd4ml init DIR --ci {system}`)")
    pipeline, template = CI_FILES[system]
    spec = install or f"cd4ml=={importlib.metadata.version('cd4ml')}"
    files = {Path(pipeline): (CI / template).read_text(encoding="utf-8"),
             Path(CI_JOBS): (CI / "cd4ml.sh").read_text(encoding="utf-8"),
             Path(CI_REQUIREMENTS): f"# What the CI jobs install: cd4ml (a version, a git URL or a wheel), and what\n"
                                    f"# the project's own code and tests need.\n{spec}\npytest\n"}
    existing = [str(f) for f in files if (target / f).exists()]
    if existing:
        raise ConfigError(f"{target} already has {', '.join(existing)}; refusing to overwrite: "
                          "move them away first")
    for name, text in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text, encoding="utf-8")
    (target / CI_JOBS).chmod(0o755)
    return list(files)
