"""The package's shape: imports between its packages point one way, and no function is too long.

A package is the first name under `cd4ml` (`cd4ml.serve.app` -> `serve`, `cd4ml.config` -> `config`).
Every import counts: module level, inside functions (a cycle deferred to call time is still a
cycle) and under `if TYPE_CHECKING:` (no runtime cycle, but the packages still know each other).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cd4ml"
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    source: str  # importing package
    target: str  # imported package
    where: str  # file:line of the import


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if not node.level:
            return [node.module or ""]
        base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        return [".".join(base + ([node.module] if node.module else []))]
    return []


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


def package_imports() -> list[Import]:
    """Every import from one cd4ml package into another, wherever in the file it is."""
    found = []
    for path, tree in _sources():
        module = _module_name(path)
        for node in ast.walk(tree):
            for target in _imported_modules(node, module, path.name == "__init__.py"):
                if target.startswith("cd4ml.") and _package(target) != _package(module):
                    found.append(Import(_package(module), _package(target),
                                        f"{path.relative_to(SRC)}:{node.lineno}"))
    return found


def find_cycle(imports: list[Import]) -> list[Import] | None:
    """One cycle of package imports (each step with an import that makes it), or None."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[Import] = []

    def visit(package: str) -> list[Import] | None:
        state[package] = "open"
        for target, imp in sorted(edges.get(package, {}).items()):
            if state.get(target) == "open":
                start = next((i for i, step in enumerate(path) if step.source == target), len(path))
                return path[start:] + [imp]
            if target not in state:
                path.append(imp)
                if cycle := visit(target):
                    return cycle
                path.pop()
        state[package] = "done"
        return None

    for package in sorted(edges):
        if package not in state and (cycle := visit(package)):
            return cycle
    return None


def long_functions(limit: int) -> list[str]:
    return [f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _sources() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_the_checker_sees_imports_inside_functions_and_type_checking_blocks():
    imports = package_imports()
    # cli.py imports the service's app inside a function and gate's GateReport under TYPE_CHECKING only.
    assert any(i.where.startswith("cd4ml/cli.py") and i.target == "serve" for i in imports)
    assert any(i.where.startswith("cd4ml/cli.py") and i.target == "gate" for i in imports)
    cycle = find_cycle([Import("a", "b", "a.py:1"), Import("b", "c", "b.py:2"), Import("c", "a", "c.py:3")])
    assert [step.where for step in cycle] == ["a.py:1", "b.py:2", "c.py:3"]


def test_no_import_cycle_between_packages():
    cycle = find_cycle(package_imports())
    assert cycle is None, f"package import cycle: {cycle[0].source} " + " ".join(
        f"-> {step.target} ({step.where})" for step in cycle)


def test_no_function_over_80_lines():
    too_long = long_functions(MAX_FUNCTION_LINES)
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(too_long)
