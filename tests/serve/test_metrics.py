"""Prometheus metrics over real HTTP: exact counters, the monitoring report, the shipped rules, a real
Prometheus server scraping the service, and several workers adding up."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cd4ml.config import load_project
from cd4ml.serve.process import free_port
from helpers import GOOD_REQUEST as GOOD, Samples, Service, scrape, system_tool, total, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
UNKNOWN_ITEM = {**GOOD, "item_nbr": 100099}  # within the schema's range, never seen in training


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(lab) | {"value": v} for (n, lab), v in samples.items() if n == name]


def test_counters_match_the_requests_sent(service: Service) -> None:
    before = scrape(service.url)
    singles = [GOOD, {**GOOD, "store_nbr": 1}, UNKNOWN_ITEM]
    batches = [[dict(GOOD, date=f"2024-08-{d:02d}") for d in range(10, 15)],
               [dict(GOOD, date=f"2024-08-{d:02d}") for d in range(10, 17)]]
    for body in [*singles, *batches]:
        assert service.client.post("/predict", json=body).status_code == 200
    bad = service.client.post("/predict", json={"date": "2024-08-20", "store_nbr": 2})
    assert bad.status_code == 422
    after = scrape(service.url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("cd4ml_requests_total", endpoint="/predict", status="200", model_version="1") == 5
    assert delta("cd4ml_requests_total", endpoint="/predict", status="422", model_version="1") == 1
    assert delta("cd4ml_requests_total") == 6
    assert delta("cd4ml_request_duration_seconds_count", endpoint="/predict") == 6
    assert 0 < delta("cd4ml_request_duration_seconds_sum") < 6 * 2.5
    assert delta("cd4ml_predictions_total", model_version="1") == 3 + 5 + 7
    assert delta("cd4ml_fallback_predictions_total", model_version="1") == 1
    assert delta("cd4ml_prediction_value_count") == 15
    assert delta("cd4ml_prediction_value_bucket", le="+Inf") == 15
    version = service.client.get("/version").json()
    assert series(after, "cd4ml_release_info") == [
        {"model_version": "1", "data_version": str(version["data_version"]), "git_commit": version["git_commit"],
         "value": 1.0}]
    assert total(after, "cd4ml_release_swaps_total") == 1
    # The log writer flushes in the background; every prediction of this service gets written.
    wait_for("the prediction log counters to catch up", lambda: (
        (s := scrape(service.url)) and
        total(s, "cd4ml_prediction_log_events_total", outcome="written") == total(s, "cd4ml_predictions_total")))
    assert total(scrape(service.url), "cd4ml_prediction_log_events_total", outcome="dropped") == 0


REPORT: dict[str, Any] = {
    "format": 1, "project": "groceries", "model_name": "groceries-forecast",
    "generated_at": "2026-11-26T17:00:00+00:00", "primary_metric": "nwrmsle", "direction": "min", "window_days": 7,
    "champion": {"version": "5", "released_at": "2026-11-26T16:40:00+00:00", "age_days": 0.01},
    "traffic": [], "prediction_histogram": None, "accuracy": [],
    "releases": [
        {"version": "4", "gate": "passed", "created_at": "2026-11-20T10:00:00+00:00", "champion": False,
         "offline": {"nwrmsle": 0.65, "rmse": 4.5}, "live": None},
        {"version": "5", "gate": "passed", "created_at": "2026-11-26T16:39:00+00:00", "champion": True,
         "offline": {"nwrmsle": 0.60, "rmse": 4.1}, "live": {"rows": 7000, "metrics": {"nwrmsle": 0.62, "rmse": 4.3}}},
    ],
    "timeline": [], "feedback": {"received": 7000, "matched": 6990, "duplicate": 5, "unknown": 5, "late": 0},
    "drift": {"reference_version": "5", "windows": [
        {"start": "2024-12-25", "end": "2024-12-31", "rows": 7000, "alarm": False, "drifted": [],
         "features": [{"name": "store_nbr", "kind": "categorical", "psi": 0.02, "ks": None, "ks_pvalue": None,
                       "new_values": [], "alarm": False}],
         "prediction": None, "target": None, "segments": []},
        {"start": "2025-01-01", "end": "2025-01-07", "rows": 7000, "alarm": True, "drifted": ["store_nbr"],
         "features": [
             {"name": "store_nbr", "kind": "categorical", "psi": 0.81, "ks": None, "ks_pvalue": None,
              "new_values": ["11"], "alarm": True},
             {"name": "onpromotion", "kind": "numeric", "psi": 0.01, "ks": 0.02, "ks_pvalue": 0.4,
              "new_values": [], "alarm": False}],
         "prediction": {"psi": 0.05, "ks": 0.03, "ks_pvalue": 0.2, "alarm": False},
         "target": None, "segments": []}]},
    "checks": [], "retrain_due": True,
}


def test_the_monitoring_report_is_exposed_at_scrape_time(service: Service, served_shop: Path) -> None:
    monitor_dir = load_project(served_shop).monitor_dir
    monitor_dir.mkdir(parents=True, exist_ok=True)
    report = monitor_dir / "report.json"
    try:
        assert total(scrape(service.url), "cd4ml_retrain_due") == 0 and not report.exists()
        report.write_text(json.dumps(REPORT))
        got = scrape(service.url)
        # Only the last drift window counts; the prediction's own drift is feature="prediction".
        assert {s["feature"]: s["value"] for s in series(got, "cd4ml_drift_psi")} == {
            "store_nbr": 0.81, "onpromotion": 0.01, "prediction": 0.05}
        assert {s["feature"]: s["value"] for s in series(got, "cd4ml_drift_alarm")} == {
            "store_nbr": 1.0, "onpromotion": 0.0, "prediction": 0.0}
        assert {(s["metric"], s["model_version"]): s["value"] for s in series(got, "cd4ml_live_metric")} == {
            ("nwrmsle", "5"): 0.62, ("rmse", "5"): 4.3}
        assert {(s["metric"], s["model_version"]): s["value"] for s in series(got, "cd4ml_offline_metric")} == {
            ("nwrmsle", "4"): 0.65, ("rmse", "4"): 4.5, ("nwrmsle", "5"): 0.60, ("rmse", "5"): 4.1}
        assert series(got, "cd4ml_live_rows") == [{"model_version": "5", "value": 7000.0}]
        assert total(got, "cd4ml_retrain_due") == 1
        assert total(got, "cd4ml_monitor_report_timestamp_seconds") == 1795712400.0  # 2026-11-26T17:00Z

        # A new report replaces the old values on the next scrape (the cache follows the file).
        report.write_text(json.dumps(REPORT | {"retrain_due": False, "drift": {"windows": []}}))
        got = scrape(service.url)
        assert total(got, "cd4ml_retrain_due") == 0 and not series(got, "cd4ml_drift_psi")
        assert series(got, "cd4ml_live_rows") == [{"model_version": "5", "value": 7000.0}]

        # A torn or foreign file exposes nothing of it, and the scrape still works.
        report.write_text('{"format": 1, "retrain_due": tr')
        got = scrape(service.url)
        assert not series(got, "cd4ml_retrain_due") and not series(got, "cd4ml_live_metric")
        assert series(got, "cd4ml_release_info")
        report.write_text(json.dumps({"releases": "not a list", "retrain_due": True}))
        assert total(scrape(service.url), "cd4ml_retrain_due") == 1  # the readable parts still count
    finally:
        report.unlink(missing_ok=True)
    assert not series(scrape(service.url), "cd4ml_retrain_due")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    exe = system_tool("promtool", "prometheus")
    return subprocess.run([exe, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [("check", "rules", "cd4ml-alerts.yml"),
                                  ("check", "config", "prometheus.yml"),
                                  ("test", "rules", "cd4ml-alerts.test.yml")])
def test_shipped_prometheus_files_pass_promtool(args: tuple[str, ...]) -> None:
    proc = _promtool(*args)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


class PrometheusServer:
    """A real Prometheus on 127.0.0.1 scraping one target every second, from the shipped config."""

    def __init__(self, workdir: Path, target: str) -> None:
        exe = system_tool("prometheus", "prometheus")
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(DEPLOY / f) for f in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                cwd=workdir, stdout=out, stderr=subprocess.STDOUT)

    def query(self, promql: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]["result"]

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("prometheus to be ready", ready)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Workers:
    """A `cd4ml serve --workers 2` and the /predict requests sent to it so far, by status."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.sent: collections.Counter[int] = collections.Counter()

    def post(self, body: Any) -> int:
        # A new connection per request: the kernel spreads them over the workers.
        status = httpx.post(f"{self.svc.url}/predict", json=body, timeout=10).status_code
        self.sent[status] += 1
        return status


@pytest.fixture(scope="module")
def workers(served_shop: Path) -> Iterator[Workers]:
    """One two-worker service per module (starting one takes seconds on 2 cores)."""
    with Service(served_shop, "--workers", "2", "--no-log") as svc:
        # Each worker counts its own swap to version 1 as soon as it has loaded it.
        wait_for("both workers to load the release",
                 lambda: total(scrape(svc.url), "cd4ml_release_swaps_total") == 2)
        yield Workers(svc)


def test_several_workers_add_up(workers: Workers) -> None:
    for body in [GOOD] * 10 + [[GOOD, UNKNOWN_ITEM]]:
        assert workers.post(body) == 200
    n = sum(workers.sent.values())
    for _ in range(4):  # whichever worker answers the scrape reports every worker's counts
        got = scrape(workers.svc.url)
        assert total(got, "cd4ml_requests_total") == n
        assert total(got, "cd4ml_request_duration_seconds_count") == n
        assert total(got, "cd4ml_fallback_predictions_total", model_version="1") >= 1
        assert [(s["model_version"], s["value"]) for s in series(got, "cd4ml_release_info")] == [("1", 1.0)]


def test_an_empty_worker_file_does_not_fail_the_scrape(workers: Workers) -> None:
    # prometheus_client creates a worker's file before sizing it: a worker killed in between leaves it
    # empty for good (prometheus/client_python#1199), and a scrape in that moment used to answer 500.
    pid = workers.svc.proc.pid  # `cd4ml serve` sets the folder for the workers it starts: read a worker's
    worker = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    folder = Path(next(v for k, _, v in (e.decode().partition("=") for e in environ)
                       if k == "PROMETHEUS_MULTIPROC_DIR"))
    before = total(scrape(workers.svc.url), "cd4ml_requests_total")
    (folder / "counter_999999.db").touch()
    (folder / "histogram_999999.db").touch()
    for _ in range(4):  # either worker may answer
        assert total(scrape(workers.svc.url), "cd4ml_requests_total") == before


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_service(workers: Workers, tmp_path: Path) -> None:
    for body in [GOOD, [GOOD, UNKNOWN_ITEM], {"store_nbr": 1}, GOOD]:
        workers.post(body)
    assert workers.sent[422] >= 1
    prom = PrometheusServer(tmp_path, f"127.0.0.1:{workers.svc.port}")
    try:
        prom.wait_ready()
        up = wait_for("a successful scrape (up == 1)", lambda: prom.query('up{job="cd4ml"} == 1'))
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{workers.svc.port}"
        sent = sum(workers.sent.values())
        counted = wait_for(f"sum(cd4ml_requests_total) == {sent}",
                           lambda: prom.query(f"sum(cd4ml_requests_total) == {sent}"))
        assert float(counted[0]["value"][1]) == sent
        by_status = prom.query("sum by (status) (cd4ml_requests_total)")
        assert {int(r["metric"]["status"]): float(r["value"][1]) for r in by_status} == dict(workers.sent)
        info = prom.query("cd4ml_release_info == 1")
        assert [r["metric"]["model_version"] for r in info] == ["1"]
        # The shipped rules load and evaluate in a real server.
        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {g["name"] for g in groups} == {"cd4ml-service", "cd4ml-monitoring"}
        assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups
    finally:
        prom.stop()
    assert prom.proc.returncode == 0, prom.log.read_text()[-3000:]



def test_each_app_counts_on_its_own(tmp_path: Path) -> None:
    import numpy as np

    from cd4ml.serve.metrics import ServiceMetrics

    # Two services in one process (as in tests) each keep their own registry: no clash, no sharing.
    first, second = ServiceMetrics(tmp_path), ServiceMetrics(tmp_path)
    for _ in range(3):
        first.request(None, 503, 0.0002)  # no release live yet
    first.request("2", 200, 0.004)
    first.predicted("2", np.array([0.0, 0.7, 3.0, 7000.0, np.nan]), fallbacks=1)
    second.request("2", 200, 0.004)

    def parse(m: ServiceMetrics) -> Samples:
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(m.exposition().decode()) for s in family.samples}

    one, two = parse(first), parse(second)
    assert {(s["status"], s["model_version"]): s["value"] for s in series(one, "cd4ml_requests_total")} == {
        ("503", ""): 3.0, ("200", "2"): 1.0}
    assert total(two, "cd4ml_requests_total") == 1 and total(two, "cd4ml_predictions_total") == 0
    assert total(one, "cd4ml_request_duration_seconds_bucket", le="0.0005") == 3
    assert total(one, "cd4ml_predictions_total", model_version="2") == 5
    assert total(one, "cd4ml_fallback_predictions_total", model_version="2") == 1
    # The batch path bins like observe(): le is inclusive; NaN is not counted.
    buckets = {s["le"]: s["value"] for s in series(one, "cd4ml_prediction_value_bucket")}
    assert (buckets["0.0"], buckets["0.5"], buckets["1.0"], buckets["5.0"], buckets["5000.0"], buckets["+Inf"]) == (
        1, 1, 2, 3, 3, 4)
    assert total(one, "cd4ml_prediction_value_sum") == 7003.7
