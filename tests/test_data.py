"""Versioned, validated data: bad loads exit 4 with a report and leave the table exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.data.ingest import ingest
from cd4ml.data.table import TrainingTable
from helpers import cli


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
    if kind == "unknown store":
        bad.loc[2, "store_nbr"] = 99
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
        ("wrong type", "unit_sales", "coerce_dtype"),
        ("negative sales", "unit_sales", "greater_than_or_equal_to(0"),
        ("unknown store", "store_nbr", "isin"),
        ("duplicate keys", None, "unique"),
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
        if kind in ("negative sales", "unknown store"):
            # Example rows point at the offending rows of the file.
            rows = {e["row"] for f in report["failures"] for e in f["examples"]}
            assert rows & {1, 2, 5}


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
