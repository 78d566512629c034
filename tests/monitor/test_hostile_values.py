"""Values past what the stores can hold are refused at the door; a stored line that cannot be processed
is quarantined and counted, and never stops monitoring or refresh."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from helpers import Service, cli

pytestmark = pytest.mark.slow
HUGE = 2**63


def test_feedback_refuses_what_the_store_cannot_hold(champion_shop: Path, tmp_path: Path) -> None:
    actual = {"date": "2024-08-30", "store_nbr": 1, "item_nbr": 100001, "unit_sales": 2.0}
    with Service(champion_shop) as service:
        for body, field in [({"request_id": "a", "record": HUGE, "unit_sales": 1.0}, "record"),
                            ({"request_id": "a", "record": 2**31, "unit_sales": 1.0}, "record"),
                            ({"request_id": "a", "record": 2**64 + 5, "unit_sales": 1.0}, "record"),
                            ({**actual, "store_nbr": HUGE}, "store_nbr"),
                            ({**actual, "item_nbr": -HUGE - 1}, "item_nbr")]:
            resp = service.client.post("/feedback", json=[body])
            assert resp.status_code == 422, (body, resp.text)
            assert [(e["record"], e["field"]) for e in resp.json()["errors"]] == [(0, field)]
        assert service.client.post("/feedback", json=[actual]).status_code == 202
    csv = tmp_path / "huge.csv"
    csv.write_text(f"date,store_nbr,item_nbr,unit_sales\n2024-08-30,{HUGE},100001,2.0\n")
    proc = cli(champion_shop, "feedback", str(csv), check=4)
    assert "row 2, store_nbr" in proc.stderr and "nothing stored" in proc.stderr
    for args in (("monitor", "--check"), ("data", "refresh")):
        assert cli(champion_shop, *args).returncode in (0, 5)


def test_a_stored_line_that_cannot_be_processed_is_quarantined_not_fatal(champion_shop: Path) -> None:
    logs = champion_shop / ".cd4ml" / "predictions"
    logs.mkdir(parents=True, exist_ok=True)
    event = {"received_at": "2024-09-01T00:00:00+00:00", "request_id": "r", "record": 0, "keys": None,
             "values": {"unit_sales": 1.0}, "source": "http"}
    # As an older version accepted them: a record past int64, one past int32, and a good one.
    lines = [{**event, "record": HUGE}, {**event, "record": 2**40}, event]
    (logs / "actuals-20240901T000000-1-0.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))

    proc = cli(champion_shop, "monitor", check=0)
    assert "Quarantined: 0 prediction and 2 actuals log line(s)" in proc.stdout
    assert "internal error" not in proc.stdout + proc.stderr
    kept = (champion_shop / ".cd4ml" / "monitor" / "quarantine" / "actuals.jsonl").read_text().splitlines()
    assert [json.loads(json.loads(k)["line"])["record"] for k in kept] == [HUGE, 2**40]
    report = json.loads((champion_shop / ".cd4ml" / "monitor" / "report.json").read_text())
    assert report["quarantined"] == {"predictions": 0, "actuals": 2} and report["feedback"]["received"] == 1
    assert cli(champion_shop, "monitor", "--check").returncode in (0, 5)
    cli(champion_shop, "data", "refresh", check=0)
    assert len((champion_shop / ".cd4ml" / "monitor" / "quarantine" / "actuals.jsonl").read_text().splitlines()) == 2
