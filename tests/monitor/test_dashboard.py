"""The monitoring dashboard (`cd4ml ui`) in a real headless Chromium against a real uvicorn on loopback.

The report comes from `sample_report.json` (the documented format 1), an empty report, or a
`report()` that raises; every number asserted on the page is read from the report itself.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from cd4ml.monitor.ui import create_ui_app
from cd4ml.serve.process import free_port

pytestmark = pytest.mark.slow

SAMPLE = json.loads((Path(__file__).parent / "sample_report.json").read_text())
SCREENSHOT = Path(__file__).parent / "artifacts" / "dashboard.png"  # docs/screenshots/ keeps a real one
PANELS = ["timeline", "traffic", "predictions", "drift", "accuracy"]


@contextlib.contextmanager
def running(report: Callable[[], dict[str, Any]], **options: Any) -> Iterator[str]:
    """`create_ui_app(report)` under a real uvicorn on 127.0.0.1 (in a thread); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_ui_app(report, title="groceries", **options), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Watched:
    """A page whose requests, console errors and page errors are recorded; only loopback is reachable."""

    def __init__(self, browser: Browser, base: str) -> None:
        # A fixed locale and time zone: number and date formats do not depend on the machine.
        self.context = browser.new_context(locale="en-US", timezone_id="UTC", viewport={"width": 1280, "height": 900},
                                           color_scheme="light")
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base = base
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))
        # Anything but the local server would fail here (and be recorded above).
        self.context.route(re.compile(r"^(?!" + re.escape(base) + r"/)"), lambda route: route.abort())

    def open(self) -> Page:
        self.page.goto(self.base + "/")
        return self.page

    def assert_local_only(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.base + "/")]
        assert not outside, outside
        assert not self.failed, self.failed


@pytest.fixture
def watched(browser: Browser) -> Iterator[Callable[[str], Watched]]:
    made: list[Watched] = []

    def make(base: str) -> Watched:
        made.append(Watched(browser, base))
        return made[-1]

    yield make
    for one in made:
        one.context.close()


def _drawn(page: Page) -> None:
    """Wait until every panel is drawn, and none failed to draw."""
    for panel in PANELS:
        expect(page.locator(f"#{panel}")).to_have_attribute("data-state", "ready")


def test_sample_report_renders_every_panel_from_local_assets(watched: Callable[[str], Watched]) -> None:
    calls = []

    def report() -> dict[str, Any]:
        calls.append(time.monotonic())
        return SAMPLE

    with running(report) as base:
        w = watched(base)
        page = w.open()
        _drawn(page)

        # Header: verdict, champion and every check with its detail.
        expect(page.locator("#status")).to_have_attribute("data-state", "due")
        expect(page.locator("#status-text")).to_have_text("Retraining due")
        expect(page.locator("#title")).to_have_text("groceries")
        expect(page.locator("#champion-version")).to_have_text(f"v{SAMPLE['champion']['version']}")
        expect(page.locator("#fact-champion")).to_contain_text(f"{SAMPLE['champion']['age_days']:.1f} days")
        expect(page.locator("#fact-model")).to_have_text(SAMPLE["model_name"])
        expect(page.locator("#checks-list .check")).to_have_count(len(SAMPLE["checks"]))
        for check in SAMPLE["checks"]:
            item = page.locator(f"#check-{check['name']}")
            expect(item).to_be_visible()
            expect(item).to_contain_text(check["detail"])
            expect(item).to_have_attribute("data-state", "due" if check["due"] else "ok")

        # Timeline: one marker per release, the champion and the rejected one marked, one arc per move.
        releases = SAMPLE["releases"]
        expect(page.locator("#timeline .release-marker")).to_have_count(len(releases))
        champion = page.locator("#timeline .release-marker.champion")
        expect(champion).to_have_count(1)
        expect(champion).to_have_attribute("data-version", SAMPLE["champion"]["version"])
        rejected = [r["version"] for r in releases if r["gate"] == "rejected"]
        expect(page.locator("#timeline .release-marker.gate-rejected")).to_have_count(len(rejected))
        expect(page.locator("#timeline .move")).to_have_count(len(SAMPLE["timeline"]))
        expect(page.locator("#timeline .move.rollback")).to_have_count(
            sum(m["kind"] == "rollback" for m in SAMPLE["timeline"]))
        expect(page.locator("#timeline-summary")).to_contain_text(f"{len(releases)} releases")
        expect(page.locator("#timeline-delivery")).to_have_text(
            "Delivery, the last 90 days: 3 deployments (0.23 a week) · lead time 5.5 h (median) · change failure rate "
            "33% · time to restore 45 min (median)")

        # Traffic: the total, one bar segment per day x version, latency lines p50 + p99 per version.
        traffic = SAMPLE["traffic"]
        expect(page.locator("#traffic-total")).to_have_text(f"{sum(r['predictions'] for r in traffic):,}")
        expect(page.locator("#traffic-volume rect.bar")).to_have_count(len(traffic))
        versions = {r["model_version"] for r in traffic}
        expect(page.locator("#traffic-latency .series")).to_have_count(2 * len(versions))
        expect(page.locator("#traffic-latency")).to_be_visible()

        # Prediction distribution: one bin per reference share.
        hist = SAMPLE["prediction_histogram"]
        expect(page.locator("#predictions .bin")).to_have_count(len(hist["reference"]))
        expect(page.locator("#predictions-version")).to_have_text(f"v{hist['version']}")

        # Drift: the latest window's alarming feature, its PSI and its new value; the table over windows.
        latest = SAMPLE["drift"]["windows"][-1]
        store = next(f for f in latest["features"] if f["name"] == "store_nbr")
        row = page.locator("#drift-features tr[data-feature=store_nbr]")
        expect(row).to_be_visible()
        expect(row).to_have_class(re.compile(r"\balarm\b"))
        expect(row).to_contain_text(f"{store['psi']:.2f}")
        expect(row.locator(".chip.new")).to_have_text(store["new_values"])
        expect(page.locator("#drifted")).to_have_text(", ".join(latest["drifted"]))
        quiet = next(f for f in latest["features"] if not f["alarm"])
        expect(page.locator(f"#drift-features tr[data-feature={quiet['name']}]")).not_to_have_class(
            re.compile(r"\balarm\b"))
        alarms = sum(f["alarm"] for w in SAMPLE["drift"]["windows"] for f in w["features"]) + sum(
            bool(w[k] and w[k]["alarm"]) for w in SAMPLE["drift"]["windows"] for k in ("prediction", "target"))
        expect(page.locator("#drift-windows td.alarm-cell")).to_have_count(alarms)
        expect(page.locator("#drift-windows thead th")).to_have_count(1 + len(SAMPLE["drift"]["windows"]))
        expect(page.locator("#drift-outputs")).to_contain_text("no actuals yet")  # the latest target is null
        segments = [s for s in latest["segments"] if s["alarm"]]
        expect(page.locator("#drift-segments tbody tr")).to_have_count(len(segments))
        expect(page.locator("#drift-segments")).to_contain_text("BEVERAGES")
        expect(page.locator("#drift-segments")).to_contain_text("−0.42")

        # Accuracy: live vs offline per release, as bars and as numbers; feedback counts.
        metric = SAMPLE["primary_metric"]
        for release in releases:
            line = page.locator(f"#accuracy-table tr[data-version='{release['version']}']")
            expect(line).to_contain_text(f"{release['offline'][metric]:.3f}")
            if release["live"]:
                live = release["live"]["metrics"][metric]
                expect(line).to_contain_text(f"{live:.3f}")
                expect(page.locator("#accuracy-releases svg text.value.live", has_text=f"{live:.3f}")).to_be_visible()
            else:
                expect(line).to_contain_text("no actuals yet")
        expect(page.locator("#accuracy-daily .series")).to_have_count(
            len({r["model_version"] for r in SAMPLE["accuracy"]}))
        for key, value in SAMPLE["feedback"].items():
            expect(page.locator(f"#feedback-{key}")).to_contain_text(f"{value:,}")

        # The numbers behind the charts: folded tables with every row.
        page.click("#traffic details.numbers summary")
        expect(page.locator("#traffic-table tbody tr")).to_have_count(len(traffic))

        page.click("#traffic details.numbers summary")  # folded again for the screenshot
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        w.assert_local_only()
        paths = {u[len(base):] for u in w.requests}
        assert {"/", "/api/report", "/static/dashboard.js", "/static/dashboard.css"} <= paths, paths
        assert not w.console, w.console
        assert len(calls) == 1, "one page load builds the report once"


def test_empty_report_shows_the_empty_states(watched: Callable[[str], Watched]) -> None:
    empty = copy.deepcopy(SAMPLE) | {
        "champion": None, "traffic": [], "prediction_histogram": None, "accuracy": [], "releases": [],
        "timeline": [], "feedback": {"received": 0, "matched": 0, "duplicate": 0, "unknown": 0, "late": 0},
        "drift": {"reference_version": None, "windows": []}, "checks": [], "retrain_due": False}
    with running(lambda: empty) as base:
        w = watched(base)
        page = w.open()
        _drawn(page)
        expect(page.locator("#status")).to_have_attribute("data-state", "healthy")
        expect(page.locator("#status-text")).to_have_text("Healthy")
        expect(page.locator("#champion-version")).to_have_text("none yet")
        expect(page.locator("#checks-list")).to_contain_text("No retraining checks")
        for panel in PANELS:
            expect(page.locator(f"#{panel}-empty")).to_be_visible()
        expect(page.locator("#accuracy-empty")).to_contain_text("No actuals yet")
        expect(page.locator("#feedback-received")).to_have_text("0")
        expect(page.locator("svg.chart")).to_have_count(0)
        w.assert_local_only()
        assert not w.console, w.console


def test_checks_not_judged_and_traffic_kept_out_are_shown(watched: Callable[[str], Watched]) -> None:
    report = copy.deepcopy(SAMPLE)
    report["checks"] = [
        {"name": "drift", "enabled": True, "status": "ok", "due": False, "judged": True,
         "detail": "window 2024-09-09..2024-09-15: no drift in 840 rows", "rows": 840, "min_rows": 200},
        {"name": "accuracy", "enabled": True, "status": "not judged", "due": False, "judged": False,
         "detail": "at most 119 scored rows of the champion in a window (1,000 needed)", "rows": 119,
         "min_rows": 1000}]
    report |= {"retrain_due": False, "not_judged": ["accuracy"],
               "excluded": {"test": 1000, "out_of_range": 1, "out_of_range_days": ["9999-12-31"],
                            "plausible_days": 90}}
    with running(lambda: report) as base:
        page = watched(base).open()
        _drawn(page)
        expect(page.locator("#status")).to_have_attribute("data-state", "unjudged")
        expect(page.locator("#status-text")).to_have_text("Not judged: accuracy")
        accuracy = page.locator("#check-accuracy")
        expect(accuracy).to_have_attribute("data-state", "unjudged")
        expect(accuracy.locator(".badge")).to_have_text("not judged")
        expect(accuracy.locator(".badge")).to_have_attribute("title", re.compile("119 rows, 1,000 needed"))
        expect(page.locator("#check-drift")).to_have_attribute("data-state", "ok")
        expect(page.locator("#traffic-excluded")).to_have_text(
            "Kept out of windows, accuracy and checks: 1,000 test-traffic predictions, 1 dated out of range "
            "(e.g. 9999-12-31; more than 90 days from the usual lead).")


def test_report_failure_is_shown_and_answered_503(watched: Callable[[str], Watched]) -> None:
    message = "no prediction log under /srv/shop/.cd4ml/predictions: run `cd4ml serve` first"

    def broken() -> dict[str, Any]:
        raise FileNotFoundError(message)

    with running(broken) as base:
        answer = httpx.get(base + "/api/report", timeout=10)
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {"detail": message}

        w = watched(base)
        page = w.open()
        expect(page.locator("#banner")).to_be_visible()
        expect(page.locator("#error-detail")).to_have_text(message)
        expect(page.locator("#status")).to_have_attribute("data-state", "error")
        expect(page.locator("#timeline .empty")).to_have_text("No report to show.")
        w.assert_local_only()
        # The browser logs the 503 itself; nothing else may fail.
        assert all("503" in line for line in w.console), w.console


def test_report_is_built_once_for_concurrent_and_quick_requests() -> None:
    calls = []

    def slow() -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.3)  # a real report reads the prediction store
        return SAMPLE

    with running(slow, cache_seconds=5) as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            statuses: list[int] = []
            threads = [threading.Thread(target=lambda: statuses.append(client.get("/api/report").status_code))
                       for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert statuses == [200] * 5
            assert client.get("/api/report").json() == SAMPLE
    assert len(calls) == 1


def test_a_classifiers_outcomes_and_class_probability_drift_are_shown(watched: Callable[[str], Watched]) -> None:
    report = copy.deepcopy(SAMPLE)
    curve = {"classes": ["no", "yes"], "calibration_of": "yes", "bin_rows": [0, 5, 0, 0, 0, 0, 0, 0, 7, 0],
             "predicted": [None, 0.15, None, None, None, None, None, None, 0.85, None],
             "observed": [None, 0.2, None, None, None, None, None, None, 0.857142, None]}
    champion = next(r for r in report["releases"] if r["champion"])
    champion["outcomes"] = {"live": {**curve, "confusion": [[4, 1], [1, 6]]},
                            "offline": {**curve, "confusion": [[40, 12], [3, 1234]]}}
    window = report["drift"]["windows"][-1]
    window["probabilities"] = [{"name": n, "psi": 0.31, "ks": 0.2, "ks_pvalue": 0.01, "alarm": True}
                               for n in ("no", "yes")]
    with running(lambda: report) as base:
        page = watched(base).open()
        _drawn(page)
        matrix = page.locator(f"#confusion-{champion['version']}")
        expect(matrix.locator("tbody tr").nth(1)).to_have_text(re.compile(r"yes\s*1 / 3\s*6 / 1,234"))
        calibration = page.locator(f"#calibration-{champion['version']}")
        expect(calibration.locator("caption")).to_contain_text("probability of yes")
        expect(calibration.locator("tbody tr").nth(8)).to_contain_text("0.857 / 0.857")
        expect(page.locator("#drift-outputs tbody tr.alarm")).to_have_count(2)
        expect(page.locator("#drift-outputs")).to_contain_text("probability of yes")
