"""`cd4ml serve --workers 2` under load while the champion moves 10 times: no request fails, every
answer comes from a registered champion, and after each move both workers serve the new one."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from cd4ml.config import load_project
from cd4ml.release.registry import Registry
from helpers import GOOD_REQUEST, Service, scrape, total, wait_for

pytestmark = pytest.mark.slow
SWAPS = 10
CLIENTS = 3


def _load(url: str, stop: threading.Event, versions: list[str], failures: list[str]) -> None:
    while not stop.is_set():
        try:  # a new connection per request: the kernel spreads them over both workers
            resp = httpx.post(f"{url}/predict", json=GOOD_REQUEST, headers={"Connection": "close"}, timeout=10)
        except httpx.HTTPError as exc:  # a dropped connection is a failed request
            failures.append(repr(exc))
            continue
        if resp.status_code == 200:
            versions.append(resp.json()["model_version"])
        else:
            failures.append(f"{resp.status_code} {resp.text[:200]}")


def test_two_workers_follow_ten_moves_under_load_without_a_failed_request(two_versions_shop: Path) -> None:
    champion_shop = two_versions_shop
    registry = Registry.for_project(load_project(champion_shop))
    with Service(champion_shop, "--workers", "2", "--no-log", poll=0.3) as service:
        swapped = lambda: total(scrape(service.url), "cd4ml_release_swaps_total")  # noqa: E731  (summed over workers)
        wait_for("both workers to load version 1", lambda: swapped() == 2, timeout=60)
        stop, versions, failures = threading.Event(), [], []
        clients = [threading.Thread(target=_load, args=(service.url, stop, versions, failures))
                   for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            for move in range(1, SWAPS + 1):
                if move % 2:
                    registry.promote("2", kind="promote", why="swap under load")
                else:
                    registry.rollback("swap under load")
                # Each worker counts its own swap once it serves the new champion.
                wait_for(f"both workers to follow move {move}", lambda: swapped() == 2 + 2 * move, timeout=60)
                # Each client may have had one request in flight across the swap: those answers are skipped.
                after = len(versions) + CLIENTS
                wait_for(f"answers after move {move}", lambda: len(versions) >= after + 20, timeout=60)
                assert set(versions[after:]) == {"2" if move % 2 else "1"}, (move, versions[after:])
        finally:
            stop.set()
            for c in clients:
                c.join()
    assert failures == []
    assert set(versions) == {"1", "2"} and len(versions) > 20 * SWAPS
    history = [(e.kind, e.to_version) for e in registry.history()]
    assert history[-SWAPS:] == [("promote", "2"), ("rollback", "1")] * (SWAPS // 2)
