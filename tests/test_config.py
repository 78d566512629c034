"""The project file: typed parsing, overrides, and errors that name file, key and problem."""

from pathlib import Path

import pytest

from cd4ml.config import load_project, parse_overrides
from cd4ml.errors import ConfigError
from cd4ml.scaffold import init_project
from helpers import edit_yaml


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    init_project(tmp_path / "p", "groceries")
    return tmp_path / "p"


def test_example_parses_into_typed_config(project_dir: Path) -> None:
    project = load_project(project_dir)
    cfg = project.config
    assert cfg.target == "unit_sales" and cfg.time_column == "date"
    assert cfg.schema_.columns["store_type"].categories == ["A", "B", "C", "D", "E"]
    assert cfg.schema_.columns["store_nbr"].categories is None  # stores open: the monitor flags new ones
    assert cfg.metrics.weight.values == {"1": 1.25}
    # Lookup attributes are filled from their key, so requests carry only these:
    assert cfg.input_columns == ["date", "store_nbr", "item_nbr", "onpromotion"]


def test_blank_template_is_a_valid_project(tmp_path: Path) -> None:
    init_project(tmp_path / "blank")
    cfg = load_project(tmp_path / "blank").config
    assert cfg.source.path == "data/my_data.csv"


def test_overrides_are_applied_and_validated(project_dir: Path) -> None:
    project = load_project(project_dir, parse_overrides(["model.params.n_estimators=5", "split.holdout_days=7"]))
    assert project.config.model.params["n_estimators"] == 5
    assert project.config.split.holdout_days == 7
    assert project.overrides == {"model.params.n_estimators": 5, "split.holdout_days": 7}


@pytest.mark.parametrize(
    ("sets", "edits", "key", "message"),
    [
        (["model.nope=1"], {}, "model.nope", "unknown key"),
        (["split.holdout_days=-3"], {}, "split.holdout_days", "greater than 0"),
        (["metrics.primary=accuracy"], {}, "metrics", "unknown metric 'accuracy'"),
        ([], {"target": "sales"}, "cd4ml.yaml: target: ", "target 'sales' is not a column"),
        ([], {"schema__columns__date": {"type": "timestamp"}}, "schema.columns.date.type", "Input should be"),
        (["target"], {}, "target", "must look like dotted.key=value"),
    ],
)
def test_errors_name_file_key_and_problem(project_dir: Path, sets, edits, key, message) -> None:
    if edits:
        edit_yaml(project_dir, **edits)
    with pytest.raises(ConfigError) as info:
        load_project(project_dir, parse_overrides(sets))
    text = str(info.value)
    assert key in text and message in text
    if sets != ["target"]:
        assert str(project_dir / "cd4ml.yaml") in text
    assert info.value.exit_code == 2


def test_missing_project_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cd4ml init"):
        load_project(tmp_path)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "cd4ml.yaml").write_text("project: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_project(tmp_path)


def test_threshold_on_a_metric_not_computed_is_a_config_error(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match="acceptance.thresholds names metric 'mae', which is not computed"):
        load_project(project_dir, parse_overrides(["metrics.report=[rmse]", "acceptance.thresholds={mae: {max: 1}}"]))


@pytest.mark.parametrize("example", [None, "groceries", "churn"])
def test_init_refuses_to_overwrite_any_template_file(tmp_path: Path, example: str | None) -> None:
    target = tmp_path / "p"
    target.mkdir()
    (target / ".gitignore").write_text("mine\n")
    (target / "notes.txt").write_text("unrelated\n")
    with pytest.raises(ConfigError, match=r"already has \.gitignore; refusing to overwrite") as info:
        init_project(target, example)
    assert info.value.exit_code == 2
    assert (target / ".gitignore").read_text() == "mine\n"
    assert sorted(p.name for p in target.iterdir()) == [".gitignore", "notes.txt"]  # nothing written


def test_init_lists_every_existing_template_file(tmp_path: Path) -> None:
    target = tmp_path / "p"
    (target / "tests").mkdir(parents=True)
    (target / "features.py").write_text("# my features\n")
    (target / "tests" / "test_features.py").write_text("# my tests\n")
    with pytest.raises(ConfigError, match=r"features\.py, tests/test_features\.py"):
        init_project(target, "groceries")
    assert (target / "features.py").read_text() == "# my features\n" and not (target / "cd4ml.yaml").exists()


def test_init_writes_into_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "p" / "data").mkdir(parents=True)
    files = init_project(tmp_path / "p")
    assert [str(f) for f in files] == [".gitignore", "cd4ml.yaml"]
    assert (tmp_path / "p" / "data").is_dir()


@pytest.mark.parametrize(("edits", "message"), [
    ({"schema__columns__unit_sales": {"type": "float", "nullable": True}}, "target 'unit_sales' cannot be nullable"),
    ({"schema__columns__date": {"type": "date", "nullable": True}}, "time_column 'date' cannot be nullable"),
    ({"schema__columns__item_nbr": {"type": "int", "nullable": True}}, "forecast.series names 'item_nbr', which is nullable"),
    ({"forecast": None, "features__history": None, "schema__columns__item_nbr": {"type": "int", "nullable": True}},
     "schema.keys 'item_nbr' cannot be nullable"),
])
def test_nullable_target_time_or_key_column_is_a_config_error(project_dir: Path, edits, message) -> None:
    edit_yaml(project_dir, **edits)
    with pytest.raises(ConfigError, match=message) as info:
        load_project(project_dir)
    assert str(project_dir / "cd4ml.yaml") in str(info.value)


@pytest.mark.parametrize(("setting", "message"), [
    ("features.numeric=[onpromotion, expected_sales]", "features.numeric names 'expected_sales', a label column"),
    ("features.categorical=[unit_sales]", "features.categorical names 'unit_sales', a label column"),
    ("features.target_encodings=[[store_nbr, unit_sales]]",
     "features.target_encodings names 'unit_sales', a label column"),
    ("features.lookups=[{key: item_nbr, columns: [expected_sales]}]",
     "features.lookups names 'expected_sales', a label column"),
    ("features.numeric=[onpromotion, family]", "features.numeric names 'family', a str column"),
])
def test_label_or_text_columns_as_model_inputs_are_config_errors(project_dir: Path, setting: str,
                                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_project(project_dir, parse_overrides([setting]))
    assert str(project_dir / "cd4ml.yaml") in str(info.value) and info.value.exit_code == 2


@pytest.mark.parametrize("name", ["team/model", "", "has space", "x" * 201])
def test_invalid_registry_model_name_is_a_config_error(project_dir: Path, name: str) -> None:
    edit_yaml(project_dir, registry__model_name=name)
    with pytest.raises(ConfigError, match="registry.model_name: .* must be 1 to 200 letters, digits"):
        load_project(project_dir)


def test_valid_registry_model_names_are_accepted(project_dir: Path) -> None:
    for name in ["a", "Sales_v2.1-eu", "x" * 200]:
        edit_yaml(project_dir, registry__model_name=name)
        assert load_project(project_dir).config.registry.model_name == name
