"""`cd4ml diff A B`: what changed between two releases, from their records alone (the MLflow runs that
registered them, the table's versions and git): config, data, code, metrics, slices, gate verdicts."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cd4ml.config import Project, dotted_keys
from cd4ml.data.table import TableVersion, TrainingTable
from cd4ml.errors import ReleaseError
from cd4ml.release.registry import TAG, Registry

SLICES_SHOWN = 10  # the slice values whose primary metric moved most, per column


@dataclass(frozen=True)
class Side:
    """One release's record."""

    version: str
    run_id: str
    gate: str | None
    data_version: int | None
    data_rows: int | None
    data_time: str | None  # "first .. last" of the table version, as stored
    commit: str | None
    dirty: bool
    code_digest: str | None


@dataclass(frozen=True)
class Change:
    """One compared value; `change` relative to `a` where both are numbers (None otherwise)."""

    name: str
    a: Any
    b: Any
    change: float | None = None


@dataclass(frozen=True)
class ReleaseDiff:
    a: Side
    b: Side
    primary: str
    config: list[Change]  # resolved config keys that differ
    metrics: list[Change]  # the model's holdout metrics (primary first), then any other logged metric that moved
    slices: list[Change]  # `column=value` primary metric, the largest moves first
    commits: list[str]  # `sha subject`, from a's commit to b's
    files: list[str]  # files that differ between the two commits
    code_note: str  # why commits or files are missing, if they are

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """The diff for a pull request comment."""
        a, b = self.a, self.b
        lines = [f"### cd4ml diff: version {a.version} -> {b.version}", "",
                 "| | " + f"v{a.version} | v{b.version} |", "|---|---|---|",
                 f"| gate | {a.gate} | {b.gate} |",
                 f"| data version | {a.data_version} ({format_rows(a)}) | {b.data_version} ({format_rows(b)}) |",
                 f"| data time | {a.data_time} | {b.data_time} |",
                 f"| commit | {_commit(a)} | {_commit(b)} |", ""]
        lines += ["| metric | " + f"v{a.version} | v{b.version} | change |", "|---|--:|--:|--:|"]
        lines += [f"| {markdown(c.name)} | {format_value(c.a)} | {format_value(c.b)} | {format_change(c.change)} |"
                  for c in self.metrics]
        if self.config:
            lines += ["", "| config | " + f"v{a.version} | v{b.version} |", "|---|---|---|"]
            lines += [f"| {markdown(c.name)} | {markdown(c.a)} | {markdown(c.b)} |" for c in self.config]
        if self.slices:
            lines += ["", f"| slice ({self.primary}) | v{a.version} | v{b.version} | change |", "|---|--:|--:|--:|"]
            lines += [f"| {markdown(c.name)} | {format_value(c.a)} | {format_value(c.b)} | {format_change(c.change)} |"
                      for c in self.slices]
        if self.commits or self.files or self.code_note:
            lines += ["", f"**Code** ({len(self.commits)} commit(s), {len(self.files)} file(s) changed)"
                      + (f": {markdown(self.code_note)}" if self.code_note else "")]
            lines += [f"- {markdown(c)}" for c in self.commits[:20]]
            if self.files:
                lines += ["", "Files: " + ", ".join(markdown(f) for f in self.files[:30])]
        return "\n".join(lines) + "\n"


def diff_releases(project: Project, registry: Registry, first: str, second: str) -> ReleaseDiff:
    """The diff of versions `first` and `second` (numbers, or `champion`); ReleaseError naming the known
    versions if either is not one."""
    a_run, a = _side(project, registry, first)
    b_run, b = _side(project, registry, second)
    primary = project.config.metrics.primary
    commits, files, note = _code(project.root, a.commit, b.commit)
    metrics = _changes(a_run.data.metrics, b_run.data.metrics)
    model = sorted((c for c in metrics if "." not in c.name and not c.name.startswith("baseline_")),
                   key=lambda c: c.name != primary)
    moved = [c for c in metrics if c not in model and c.a != c.b]
    return ReleaseDiff(a, b, primary, _config_changes(registry, a.run_id, b.run_id), model + moved,
                       _slice_changes(registry, a.run_id, b.run_id), commits, files, note)


def _side(project: Project, registry: Registry, name: str) -> tuple[Any, Side]:
    known = [str(v.version) for v in registry.versions()]
    if name == "champion":
        champion = registry.champion()
        if champion is None:
            raise ReleaseError("there is no champion yet: name a version" + _known(known))
        name = str(champion.version)
    if name not in known:
        raise ReleaseError(f"model {registry.name!r} has no version {name!r}" + _known(known))
    mv = registry.version(name)
    if not mv.run_id:
        raise ReleaseError(f"version {name} has no MLflow run to compare (registered outside cd4ml?)")
    run = registry.client.get_run(mv.run_id)
    tags = run.data.tags
    data_version = int(tags[f"{TAG}data_version"]) if f"{TAG}data_version" in tags else None
    table = _table_version(project, data_version)
    return run, Side(name, mv.run_id, mv.tags.get(f"{TAG}gate"), data_version,
                     table.rows if table else None,
                     f"{_day(table.time_min)} .. {_day(table.time_max)}" if table and table.time_min else None,
                     tags.get(f"{TAG}git_commit"), tags.get(f"{TAG}git_dirty") == "True", tags.get(f"{TAG}code_digest"))


def _known(versions: list[str]) -> str:
    return f" (known: {', '.join(versions)})" if versions else " (no version is registered yet)"


def _table_version(project: Project, version: int | None) -> TableVersion | None:
    table = TrainingTable.for_project(project)
    if version is None or not table.exists():
        return None
    return next((v for v in table.versions() if v.version == version), None)


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    out = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        numbers = isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool)
        out.append(Change(name, x, y, (y - x) / abs(x) if numbers and x else None))
    return out


def _artifact(registry: Registry, run_id: str, path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(registry.client.download_artifacts(run_id, path)).read_text(encoding="utf-8"))
    except Exception:  # an artifact a run did not log (an older cd4ml) compares as empty
        return {}


def _config_changes(registry: Registry, a: str, b: str) -> list[Change]:
    path = "config/cd4ml.resolved.json"
    x, y = dotted_keys("", _artifact(registry, a, path)), dotted_keys("", _artifact(registry, b, path))
    return [c for c in _changes(x, y) if c.a != c.b]


def _slice_changes(registry: Registry, a: str, b: str) -> list[Change]:
    path = "evaluation/slices.json"
    x, y = _artifact(registry, a, path).get("slices", {}), _artifact(registry, b, path).get("slices", {})
    out = []
    for column in sorted(set(x) & set(y)):
        metric = lambda scores: next((v for k, v in scores.items() if k != "rows"), None)  # noqa: E731
        values = [Change(f"{column}={value}", metric(x[column][value]), metric(y[column][value]))
                  for value in sorted(set(x[column]) & set(y[column]))]
        changed = [Change(c.name, c.a, c.b, (c.b - c.a) / abs(c.a) if c.a else None) for c in values
                   if c.a is not None and c.b is not None]
        out += sorted((c for c in changed if c.a != c.b), key=lambda c: -abs(c.change or 0.0))[:SLICES_SHOWN]
    return out


def _code(root: Path, a: str | None, b: str | None) -> tuple[list[str], list[str], str]:
    """Commits from `a` to `b` and the files that differ between them, or why they cannot be listed."""
    if not a or not b or "none" in (a, b):
        return [], [], "a release was trained outside a git repository"
    if a == b:
        return [], [], ""

    def git(*args: str) -> list[str]:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if proc.returncode:
            raise LookupError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed")
        return [line for line in proc.stdout.splitlines() if line]

    try:
        for sha in (a, b):
            git("cat-file", "-e", f"{sha}^{{commit}}")
    except (LookupError, FileNotFoundError):
        return [], [], f"commit {sha[:8]} is not in this repository (a shallow clone, or rewritten history)"
    newer, older = (b, a) if subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=root).returncode == 0 \
        else (a, b)
    commits = git("log", "--format=%h %s", f"{older}..{newer}")
    return commits, git("diff", "--name-only", a, b), "" if newer == b else "b is older than a: commits listed b..a"


def _day(time: str) -> str:
    return time.removesuffix(" 00:00:00").removesuffix("T00:00:00")


def format_rows(side: Side) -> str:
    return f"{side.data_rows:,} rows" if side.data_rows is not None else "rows unknown"


def _commit(side: Side) -> str:
    return f"{(side.commit or 'none')[:8]}{' (dirty)' if side.dirty else ''}"


def format_value(value: Any) -> str:
    """A compared value as the tables show it: 4 decimals, large whole numbers with separators, '—' for none."""
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4f}"
    return _text(value)


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def markdown(value: Any) -> str:
    """`value` as literal Markdown text (a commit subject, a config value): no table break, markup or HTML."""
    text = _text(value)
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def format_change(change: float | None) -> str:
    return "" if change is None else f"{change:+.1%}"
