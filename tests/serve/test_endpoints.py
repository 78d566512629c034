"""The service's endpoints are functions over a `Service`: each can be called alone, without an app or a server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request

from cd4ml.config import load_project
from cd4ml.serve.app import Service, predict
from helpers import GOOD_REQUEST


def _post(service: Service, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = orjson.dumps(record)
    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    # A loop of its own on a thread of its own: an earlier test in this worker (Playwright's sync API)
    # may have left a loop running on this thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        response = pool.submit(asyncio.run, predict(service, Request(scope, receive))).result()
    return response.status_code, orjson.loads(response.body)


def test_predict_answers_alone_from_a_service(champion_shop: Path) -> None:
    service = Service.for_project(load_project(champion_shop), log_predictions=False, poll_seconds=None)
    # Not started: no release is loaded, so the answer is the one a client gets before the first champion.
    status, doc = _post(service, GOOD_REQUEST)
    assert status == 503 and "cd4ml run" in doc["detail"]

    service.start()
    try:
        deadline = time.monotonic() + 60
        while service.watcher.current is None and time.monotonic() < deadline:
            time.sleep(0.1)
        status, doc = _post(service, GOOD_REQUEST)
    finally:
        service.stop()
    assert status == 200 and doc["model_version"] == "1" and isinstance(doc["prediction"], float)
