"""The service's endpoints are functions over a `Service`: each can be called alone, without an app or a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from starlette.requests import Request

from cd4ml.config import load_project
from cd4ml.serve.app import Service, predict
from helpers import GOOD_REQUEST


def test_predict_answers_alone_from_a_service(shop: Path) -> None:
    service = Service.for_project(load_project(shop), log_predictions=False, poll_seconds=None)
    body = orjson.dumps(GOOD_REQUEST)
    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    # Not started: no release is loaded, so the answer is the one a client gets before the first champion.
    response = asyncio.run(predict(service, Request(scope, receive)))
    assert response.status_code == 503
    assert "cd4ml run" in orjson.loads(response.body)["detail"]
