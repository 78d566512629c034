"""A hostile or careless project file: the CLI exits 2 with one line naming the file, the place and the key."""

from pathlib import Path

import pytest

from cd4ml.scaffold import init_project
from cd4ml.yamlfile import parse_yaml
from helpers import cli


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    init_project(tmp_path / "p", "groceries")
    return tmp_path / "p"


def _error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_a_file_that_is_not_utf8_is_located_not_a_crash(project_dir: Path) -> None:
    path = project_dir / "cd4ml.yaml"
    path.write_bytes(b"project: caf\xe9\n" + path.read_bytes())
    proc = cli(project_dir, "run", check=2)
    assert _error_lines(proc) == [f"error (ConfigError): {path}: not UTF-8 text: byte 0xe9 at line 1, column 13 "
                                  "(save the file as UTF-8)"]
    assert "internal error" not in proc.stdout + proc.stderr


def test_a_key_given_twice_is_refused_with_both_lines(project_dir: Path) -> None:
    path = project_dir / "cd4ml.yaml"
    text = path.read_text()
    path.write_text(text.replace("target: unit_sales", "target: unit_sales\ntarget: onpromotion", 1))
    line = text[:text.index("target: unit_sales")].count("\n") + 1
    proc = cli(project_dir, "run", check=2)
    assert _error_lines(proc) == [f"error (ConfigError): {path}: not valid YAML: line {line + 1}, column 1: "
                                  f"key 'target' is given twice (first on line {line})"]


def test_a_nested_key_given_twice_is_refused(project_dir: Path) -> None:
    path = project_dir / "cd4ml.yaml"
    path.write_text(path.read_text() + "\nextra:\n  a: 1\n  a: 2\n")
    proc = cli(project_dir, "run", check=2)
    assert "key 'a' is given twice" in proc.stdout + proc.stderr


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    # `<<:` copies keys that the mapping may then set again: that is YAML, not a duplicate.
    assert parse_yaml("base: &b {a: 1, b: 2}\nuse: {<<: *b, a: 3}\n") == {"base": {"a": 1, "b": 2},
                                                                          "use": {"a": 3, "b": 2}}


def test_a_syntax_error_is_one_line_with_line_and_column(project_dir: Path) -> None:
    path = project_dir / "cd4ml.yaml"
    path.write_text("project: x\n  bad: [\n")
    proc = cli(project_dir, "run", check=2)
    assert _error_lines(proc) == [f"error (ConfigError): {path}: not valid YAML: line 2, column 6: "
                                  "mapping values are not allowed here"]


def test_a_set_value_given_twice_names_the_option(project_dir: Path) -> None:
    proc = cli(project_dir, "run", "--set", "model.params={a: 1, a: 2}", check=2)
    assert "--set model.params: not valid YAML: line 1, column 8: key 'a' is given twice" in proc.stdout + proc.stderr


@pytest.mark.parametrize("setting, key", [
    ("schema.columns.onpromotion={type: float, min: 5, max: 1}", "schema.columns.onpromotion"),
    ("acceptance.thresholds={nwrmsle: {min: 5, max: 1}}", "acceptance.thresholds.nwrmsle"),
])
def test_min_above_max_is_a_config_error_naming_the_key(project_dir: Path, setting: str, key: str) -> None:
    proc = cli(project_dir, "run", "--set", setting, check=2)
    assert f"{key}: min 5 is above max 1" in proc.stdout + proc.stderr
    assert not (project_dir / ".cd4ml").exists()  # refused before anything was read or written
