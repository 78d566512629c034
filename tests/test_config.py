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
    assert cfg.schema_.columns["store_nbr"].categories == list(range(1, 11))
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
        ([], {"target": "sales"}, "(top level)", "target 'sales' is not a column"),
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
