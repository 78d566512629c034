"""Two writers of one training table at once: the duplicate-key check and the write are one step."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.config import load_project
from cd4ml.data.ingest import ingest
from cd4ml.data.table import TrainingTable
from cd4ml.errors import DataRejected

TRIALS = 10


def _append_at_once(root: Path, csv: str) -> list[str]:
    """Two `ingest --append` of `csv` released together; what each ended with ("ok" or the rejection)."""
    barrier, outcomes = threading.Barrier(2), []

    def one() -> None:
        project = load_project(root)
        barrier.wait()
        try:
            ingest(project, path=csv, mode="append")
            outcomes.append("ok")
        except DataRejected as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes, key=lambda outcome: outcome != "ok")


@pytest.mark.slow
def test_two_appends_of_the_same_rows_at_once_store_them_once(shop: Path) -> None:
    table = TrainingTable.for_project(load_project(shop))
    keys = load_project(shop).config.schema_.keys
    start, version0 = table.read()
    last_day = start[start["date"] == start["date"].max()].reset_index(drop=True)
    for trial in range(1, TRIALS + 1):
        last_day.assign(date=last_day["date"] + pd.Timedelta(days=trial)).to_csv(shop / "day.csv", index=False)
        outcomes = _append_at_once(shop, "day.csv")
        assert outcomes[0] == "ok" and "repeat keys" in outcomes[1] and "nothing was written" in outcomes[1], \
            f"trial {trial}: {outcomes}"

    final, version = table.read()
    assert version == version0 + TRIALS  # one version per trial: the loser wrote nothing
    assert len(final) == len(start) + TRIALS * len(last_day)
    assert not final.duplicated(keys).any()
    assert table.versions()[0].rows == len(final)  # the version's metadata counts what is there
