"""Values from requests reach the terminal, report.html and the CLI's errors as text: Rich markup or HTML
in a value is shown, never followed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import Service, cli, make_csv_project, train

pytestmark = pytest.mark.slow
HOSTILE = ["[link=javascript:alert(1)]x[/link]", "x[/]", "<script>alert(2)</script>", "[bold red]loud"]


def _regions_project(root: Path) -> Path:
    rng = np.random.default_rng(4)
    days = pd.date_range("2024-01-01", periods=60, freq="D")
    rows = [f"{d.date()},{r},{x:.3f},{10 + 5 * (r == 'north') + x:.3f}"
            for d in days for r in ("north", "south") for x in [rng.normal()]]
    root = make_csv_project(root, "t,region,x,y\n" + "\n".join(rows) + "\n",
                            {"t": {"type": "date"}, "region": {"type": "str"}, "x": {"type": "float"},
                             "y": {"type": "float"}},
                            features={"categorical": ["region"], "numeric": ["x"]})
    cli(root, "data", "ingest", check=0)
    assert train(root).promoted
    return root


def test_hostile_request_values_are_escaped_in_every_report(tmp_path: Path) -> None:
    root = _regions_project(tmp_path / "regions")
    records = [{"t": "2024-02-29", "region": HOSTILE[i % len(HOSTILE)], "x": 0.1} for i in range(400)]
    with Service(root) as service:
        service.wait_until("/ready", 200)
        resp = service.client.post("/predict", json=records)
        assert resp.status_code == 200, resp.text[:500]
        service.wait_logged(len(records), 0)
    proc = cli(root, "monitor", env={"COLUMNS": "300"})
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stdout + proc.stderr
    for value in HOSTILE[:2]:
        assert value in proc.stdout  # a new value of `region`, shown as given
    page = (root / ".cd4ml" / "monitor" / "report.html").read_text()
    assert 'href="javascript' not in page and "<script>alert" not in page
    assert "[link=javascript:alert(1)]x[/link]" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_a_bracket_in_a_path_is_printed_not_parsed(champion_shop: Path, tmp_path: Path) -> None:
    odd = tmp_path / "x[/]"
    odd.mkdir(parents=True)
    csv = odd / "a[bold].csv"
    csv.write_text("date,store_nbr,item_nbr,unit_sales\n2024-08-30,1,100001,2.0\n")
    proc = cli(champion_shop, "feedback", str(csv), check=0)
    assert f"actuals from {csv}" in proc.stdout
    proc = cli(champion_shop, "feedback", str(odd / "missing[/].csv"), check=4)
    assert "missing[/].csv" in proc.stderr and "Traceback" not in proc.stderr
