"""Issue 15 items 2, 7, 11, 13: the service under hostile input, each attack sent to a real `cd4ml serve`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from cd4ml.serve.predlog import read_events
from helpers import GOOD_REQUEST as GOOD, Service

JSON = {"content-type": "application/json"}


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("depth", [253, 300, 1000])
@pytest.mark.parametrize("where", ["field", "record"])
@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_deeply_nested_json_is_a_clear_422(service: Service, depth: int, where: str, path: str) -> None:
    inner = _nested(depth)
    body = b'{"date": "2024-08-20", "store_nbr": ' + inner + b"}" if where == "field" else b"[" + inner + b"]"
    resp = service.client.post(path, content=body, headers=JSON)
    assert resp.status_code == 422, resp.text
    error = resp.json()["errors"][0]
    assert "not shown" in error["value"]
    if where == "field":  # one object: the error names the field
        assert error["record"] is None and "store_nbr" in {e["field"] for e in resp.json()["errors"]}
    else:
        assert error["record"] == 0


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_a_batch_of_bad_records_answers_the_first_errors_and_their_count(service: Service, path: str) -> None:
    body = [{**GOOD, "store_nbr": "<b>x</b>"} for _ in range(300)]  # one bad field a record
    resp = service.client.post(path, json=body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["errors_total"] >= 300 and len(answer["errors"]) == 100
    records = [e["record"] for e in answer["errors"]]
    assert records[0] == 0 and records == sorted(records)  # the first records' errors, in order
    few = service.client.post(path, json=body[:2]).json()
    assert "errors_total" not in few and {e["record"] for e in few["errors"]} == {0, 1}


def test_hostile_requests_merged_with_good_ones_fail_alone(service: Service) -> None:
    """Good and hostile requests at once from many threads: each good one is answered as when alone."""
    alone = service.client.post("/predict", json=GOOD).json()["prediction"]
    hostile = [{**GOOD, "item_nbr": 2**63 + 5}, {**GOOD, "store_nbr": 2**64 - 1},
               b'{"date": "2024-08-20", "store_nbr": ' + _nested(400) + b"}", [GOOD, {**GOOD, "date": None}]]
    outcomes: list[tuple[str, int, float | None]] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            for i in range(25):
                body = hostile[(n + i) % len(hostile)] if (n + i) % 2 else GOOD
                kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
                resp = c.post("/predict", headers=JSON, **kwargs)
                good = body is GOOD
                outcomes.append(("good" if good else "bad", resp.status_code,
                                 resp.json().get("prediction") if good and resp.status_code == 200 else None))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 200
    assert {(kind, status) for kind, status, _ in outcomes} == {("good", 200), ("bad", 422)}
    assert {p for kind, _, p in outcomes if kind == "good"} == {alone}


def _rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_a_chunked_body_is_cut_at_the_limit(service: Service, path: str) -> None:
    """A 200 MB body without Content-Length: refused with 413, and the server never holds it."""
    chunk = b" " * (1 << 20)

    def body():
        yield b"["
        for _ in range(200):
            yield chunk
        yield b"]"
    before = _rss(service.proc.pid)
    peak = [before]
    sending = threading.Event()
    sending.set()

    def sample() -> None:  # the peak during the upload: a freed buffer would hide from a reading after it
        while sending.is_set():
            peak.append(_rss(service.proc.pid))
            time.sleep(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        resp = service.client.post(path, content=body(), headers=JSON, timeout=120)
    finally:
        sending.clear()
        sampler.join()
    assert resp.status_code == 413, resp.text
    assert "exceeds 2000000" in resp.json()["detail"]
    assert max(peak) - before < 50 << 20, len(peak)  # the body is 200 MB; its limit is 2 MB
    assert service.client.post(path, json=GOOD if path == "/predict" else {"request_id": "x", "unit_sales": 1.0},
                               headers=JSON).status_code in (200, 202)


@pytest.mark.parametrize(("value", "why"), [
    ("x" * 8192, "1 to 128 characters"),
    ("<script>alert(1)</script>", "1 to 128 characters"),
    ("a b", "1 to 128 characters"),
    ("x" * 129, "1 to 128 characters"),
])
def test_a_request_id_out_of_bounds_is_a_400_naming_the_header(service: Service, value: str, why: str) -> None:
    resp = service.client.post("/predict", json=GOOD, headers={"X-Request-ID": value})
    assert resp.status_code == 400, resp.text
    assert "X-Request-ID" in resp.json()["detail"] and why in resp.json()["detail"]
    assert len(resp.text) < 400  # the header is not echoed whole


def test_reused_client_ids_get_unique_request_ids_and_feedback_by_the_answered_one_works(service: Service,
                                                                                          served_shop: Path) -> None:
    client_id = "order-17:retry.2_x" + "y" * 110  # 128 characters of every allowed kind
    answers = [service.client.post("/predict", json=GOOD, headers={"X-Request-ID": client_id}).json()
               for _ in range(3)]
    assert len({a["request_id"] for a in answers}) == 3
    assert {a["client_request_id"] for a in answers} == {client_id}
    fed = service.client.post("/feedback", json={"request_id": answers[0]["request_id"], "record": 0,
                                                 "unit_sales": 4.0})
    assert fed.status_code == 202, fed.text
    log_dir = served_shop / ".cd4ml" / "predictions"
    ids = {a["request_id"] for a in answers}
    deadline = time.monotonic() + 20  # the service's log writers run in the background
    while time.monotonic() < deadline:
        logged = {e["request_id"]: e for e in read_events(log_dir) if e["request_id"] in ids}
        actuals = {e["request_id"] for e in read_events(log_dir, prefix="actuals")}
        if len(logged) == 3 and answers[0]["request_id"] in actuals:
            break
        time.sleep(0.1)
    assert {e["client_request_id"] for e in logged.values()} == {client_id} and len(logged) == 3
    assert answers[0]["request_id"] in actuals


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/json; charset=latin-1"])
def test_bodies_that_are_not_json_are_a_415(service: Service, path: str, content_type: str | None) -> None:
    """What a web page can post cross-origin without a preflight (CSRF) is refused before it is read."""
    headers = {"content-type": content_type} if content_type else {}
    resp = service.client.post(path, content=b'{"date": "2024-08-20"}', headers=headers)
    assert resp.status_code == 415, resp.text
    assert "application/json" in resp.json()["detail"] or "UTF-8" in resp.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8", "application/vnd.cd4ml+json"])
def test_json_media_types_are_taken(service: Service, content_type: str) -> None:
    resp = service.client.post("/predict", content=orjson.dumps(GOOD), headers={"content-type": content_type})
    assert resp.status_code == 200, resp.text


def test_the_served_openapi_document_is_valid(service: Service) -> None:
    from openapi_spec_validator import validate

    doc = service.client.get("/openapi.json").json()
    validate(doc)
    feedback = doc["paths"]["/feedback"]["post"]["requestBody"]
    assert "application/json" in feedback["content"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(service: Service, tmp_path: Path) -> None:
    """Every operation of the served spec, unpatched, with a bounded number of examples each."""
    junit = tmp_path / "st.xml"
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{service.url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", "40", "--seed", "15",
         "--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--workers", "1",
         "--request-timeout", "20", "--report", "junit", "--report-junit-path", str(junit)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = junit.read_text()
    for path in ("/predict", "/feedback", "/health", "/ready", "/version", "/inputs", "/metrics"):
        assert path in report  # every operation ran
