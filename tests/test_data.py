"""Versioned, validated data: bad loads exit 4 with a report and leave the table exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.data.ingest import ingest
from cd4ml.data.table import TrainingTable
from helpers import cli, edit_yaml, make_csv_project


def _table_state(root: Path) -> tuple[int, int]:
    table = TrainingTable.for_project(load_project(root))
    frame, version = table.read()
    return version, int(pd.util.hash_pandas_object(frame, index=False).sum())


def _good_rows(root: Path, n: int = 200) -> pd.DataFrame:
    frame, _ = TrainingTable.for_project(load_project(root)).read()
    return frame.tail(n).reset_index(drop=True)


def _corrupt(kind: str, good: pd.DataFrame) -> pd.DataFrame | str:
    bad = good.copy()
    if kind == "missing column":
        return bad.drop(columns=["onpromotion"])
    if kind == "wrong type":
        bad["unit_sales"] = bad["unit_sales"].astype(object)
        bad.loc[3, "unit_sales"] = "lots"
        return bad
    if kind == "negative sales":
        bad.loc[[1, 5], "unit_sales"] = -4.0
        return bad
    if kind == "unknown store type":
        bad.loc[2, "store_type"] = "Z"
        return bad
    if kind == "duplicate keys":
        return pd.concat([bad, bad.iloc[[0]]], ignore_index=True)
    if kind == "empty file":
        return ""
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "expected_column", "expected_check"),
    [
        ("missing column", "onpromotion", "column is missing"),
        ("wrong type", "unit_sales", 'row 4, column \'unit_sales\': "lots": expected a number'),
        ("negative sales", "unit_sales", "row 2, column 'unit_sales': -4.0: below min 0"),
        ("unknown store type", "store_type", "row 3, column 'store_type': \"Z\": not one of the categories (A, B"),
        ("duplicate keys", None, "repeats the key (date, store_nbr, item_nbr) of another row"),
        ("empty file", None, "empty"),
    ],
)
def test_corrupt_input_is_rejected_and_table_unchanged(shop: Path, kind: str, expected_column: str | None,
                                                      expected_check: str) -> None:
    before = _table_state(shop)
    bad = _corrupt(kind, _good_rows(shop))
    path = shop / "incoming.csv"
    path.write_text(bad) if isinstance(bad, str) else bad.to_csv(path, index=False)

    proc = cli(shop, "data", "ingest", "--path", "incoming.csv", check=4)

    assert expected_check in proc.stderr, proc.stderr
    if expected_column:
        assert expected_column in proc.stderr
    assert "nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _table_state(shop) == before
    if kind != "empty file":
        report = json.loads(sorted((shop / ".cd4ml" / "reports").glob("validation-*.json"))[-1].read_text())
        assert not report["ok"] and report["failures"]
        if kind in ("negative sales", "unknown store type"):
            # Example rows point at the offending rows of the file.
            rows = {e["row"] for f in report["failures"] for e in f["examples"]}
            assert rows & {2, 3, 6}  # row 1 is the first row of data


def test_each_accepted_load_is_a_new_pinned_version(shop: Path) -> None:
    project = load_project(shop)
    table = TrainingTable.for_project(project)
    first, v0 = table.read()
    good = _good_rows(shop, 1500)
    good.to_parquet(shop / "again.parquet")
    result = ingest(project, path="again.parquet")
    assert result.version == v0 + 1 and result.rows == 1500
    latest, v1 = table.read()
    assert len(latest) == 1500
    pinned, pinned_version = table.read(v0)  # time travel: the old version is still exact
    assert pinned_version == v0
    pd.testing.assert_frame_equal(pinned, first)
    versions = table.versions()
    assert [v.version for v in versions] == [v1, v0]
    assert versions[0].rows == 1500 and versions[1].rows == len(first)
    assert versions[1].time_min.startswith("2024-01-01") and versions[1].time_max.startswith("2024-08-31")


def test_append_refuses_keys_already_in_the_table(shop: Path) -> None:
    project = load_project(shop)
    before = _table_state(shop)
    _good_rows(shop, 50).to_csv(shop / "dupes.csv", index=False)
    from cd4ml.errors import DataRejected

    with pytest.raises(DataRejected, match="repeat keys"):
        ingest(project, path="dupes.csv", mode="append")
    assert _table_state(shop) == before


def test_versions_command_lists_rows_and_range(shop: Path) -> None:
    out = json.loads(cli(shop, "data", "versions", "--json", check=0).stdout)
    assert out[0]["version"] == 0 and out[0]["rows"] == 3 * 40 * 244
    assert out[0]["source"] == "generator:groceries"


_TYPED = {"t": {"type": "date"}, "k": {"type": "int"}, "n": {"type": "int"}, "b": {"type": "bool"},
          "y": {"type": "float"}}


def _typed_project(root: Path, rows: list[str], **columns: dict) -> Path:
    return make_csv_project(root, "t,k,n,b,y\n" + "\n".join(rows) + "\n", {**_TYPED, **columns},
                            schema__keys=["t", "k"])


def test_int_and_bool_values_are_stored_exactly(tmp_path: Path) -> None:
    root = _typed_project(tmp_path / "p", ["2024-01-01,1,2.0,False,1", "2024-01-02,1,3,0,1", "2024-01-03,1,4,TRUE,1",
                                           "2024-01-04,1,5,1,1", "2024-01-05,1,6,false,1"])
    ingest(load_project(root))
    frame, _ = TrainingTable.for_project(load_project(root)).read()
    assert frame["n"].tolist() == [2, 3, 4, 5, 6]
    assert frame["b"].tolist() == [False, False, True, True, False]


def test_validation_coerces_its_own_copy_and_leaves_the_callers_frame_as_it_was(tmp_path: Path) -> None:
    from cd4ml.data.validation import validate

    root = _typed_project(tmp_path / "p", [])
    given = pd.DataFrame({"t": ["2024-01-01", "2024-01-02"], "k": [1.0, 2.0], "n": ["2", "3"],
                          "b": ["TRUE", "0"], "y": [1.5, 2.0], "extra": ["x", "y"]})
    before = given.copy()
    clean, report = validate(given, load_project(root).config)
    assert report.ok and list(clean.columns) == ["t", "k", "n", "b", "y"]  # not in the schema: dropped
    assert clean["k"].dtype == clean["n"].dtype == "int64" and clean["b"].tolist() == [True, False]
    assert clean["t"].dtype.kind == "M"
    pd.testing.assert_frame_equal(given, before)  # same values and dtypes, the column not dropped
    # A column already of its type is not copied: a table's worth of memory per ingest.
    assert np.shares_memory(clean["y"].to_numpy(), given["y"].to_numpy())


@pytest.mark.parametrize(("column", "value", "check"), [
    ("n", "2.5", "expected a whole number"),
    ("b", "no", "expected true, false, 1 or 0"),
    ("b", "2", "expected true, false, 1 or 0"),
])
def test_values_that_coercion_would_change_are_rejected(tmp_path: Path, column: str, value: str, check: str) -> None:
    rows = ["2024-01-01,1,1,true,1", "2024-01-02,1,2,false,1", "2024-01-03,1,3,true,1"]
    root = _typed_project(tmp_path / "p", rows)
    ingest(load_project(root))
    before = _table_state(root)
    fields = rows[1].split(",")
    fields["tknby".index(column)] = value
    (root / "bad.csv").write_text("t,k,n,b,y\n" + "\n".join([rows[0], ",".join(fields), rows[2]]) + "\n")

    proc = cli(root, "data", "ingest", "--path", "bad.csv", check=4)

    assert check in proc.stderr and "nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads(sorted((root / ".cd4ml" / "reports").glob("validation-*.json"))[-1].read_text())
    [failure] = report["failures"]
    assert (failure["column"], failure["rule"], failure["rows"]) == (column, check, 1)
    assert [(e["row"], str(e["value"])) for e in failure["examples"]] == [(2, value)]
    assert _table_state(root) == before


def test_nullable_int_and_bool_columns_accept_nulls(tmp_path: Path) -> None:
    root = _typed_project(tmp_path / "p", ["2024-01-01,1,,,1", "2024-01-02,1,2,false,1", "2024-01-03,1,3,1,1"],
                          n={"type": "int", "nullable": True}, b={"type": "bool", "nullable": True})
    ingest(load_project(root))
    frame, _ = TrainingTable.for_project(load_project(root)).read()
    # Read for training as floats: NaN is how numpy features carry a null.
    assert frame["n"].dtype == frame["b"].dtype == "float64"
    assert frame["n"].fillna(-1).tolist() == [-1, 2, 3] and frame["b"].fillna(-1).tolist() == [-1, 0, 1]


def test_rows_are_read_in_time_and_key_order_so_lookups_take_the_latest(tmp_path: Path) -> None:
    from cd4ml.features import transforms
    from cd4ml.pipeline.stages import feature_spec
    from cd4ml.release.package import frame_to_batch

    # Item 1 moved from family 'old' to 'new'; the file lists the newest day first.
    rows = ["2024-01-03,2,1,true,5", "2024-01-03,1,1,true,5", "2024-01-02,1,1,true,5", "2024-01-01,1,1,true,5"]
    families = ["x", "new", "old", "old"]
    csv = "t,k,n,b,y,family\n" + "\n".join(f"{r},{f}" for r, f in zip(rows, families)) + "\n"
    root = make_csv_project(tmp_path / "p", csv, {**_TYPED, "family": {"type": "str"}}, schema__keys=["t", "k"],
                            features__lookups=[{"key": "k", "columns": ["family"]}],
                            features__categorical=["family"])
    project = load_project(root)
    ingest(project)
    frame, _ = TrainingTable.for_project(project).read()
    assert list(zip(frame["t"].dt.day, frame["k"])) == [(1, 1), (2, 1), (3, 1), (3, 2)]
    spec = feature_spec(project.config)
    plan = transforms.FeaturePlan.fit(spec, frame_to_batch(frame), frame["y"].to_numpy(), {}, np.array([]))
    request = {"t": np.array(["2024-02-01"], dtype="datetime64[D]"), "k": np.array([1]), "n": np.array([1]),
               "b": np.array([True])}
    assert plan.derive(request)["family"].tolist() == ["new"]


@pytest.mark.parametrize(("schema_change", "column", "problem"), [
    ({"schema__columns__extra": {"type": "int"}}, "extra", "is not in the table"),
    ({"schema__columns__item_class": {"type": "float"}}, "item_class", "is int in the table, float in this load"),
])
def test_append_with_other_columns_is_rejected(shop: Path, schema_change: dict, column: str, problem: str) -> None:
    before = _table_state(shop)
    _good_rows(shop, 50).assign(extra=1).to_csv(shop / "more.csv", index=False)
    edit_yaml(shop, **schema_change)

    proc = cli(shop, "data", "ingest", "--path", "more.csv", "--append", check=4)

    assert f"'{column}' {problem}" in proc.stderr.replace("\n", "")
    assert "without --append" in proc.stderr and "Traceback" not in proc.stderr
    assert _table_state(shop) == before
