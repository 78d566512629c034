"""The prediction service: FastAPI over the live release.

The request path is lean on purpose: /predict is a bare ASGI route, the body is
parsed with orjson, records are validated by one compiled pydantic adapter, the
records of concurrent requests are merged (serve/batching.py) and their features
computed on numpy arrays by the release's own packaged code, and the response is
written with orjson. No DataFrame is built per request. Every prediction is
logged through a background writer that never blocks the request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cd4ml.config import Project, load_project
from cd4ml.serve.schema import FeedbackSchema
from cd4ml.serve.batching import MicroBatcher
from cd4ml.serve.door import (REQUEST_ID_HEADER, REQUEST_ID_MAX, REQUEST_ID_PATTERN, media_type_refusal, read_body,
                              request_id_refusal)
from cd4ml.serve.metrics import CONTENT_TYPE, ServiceMetrics, multiprocess_dir
from cd4ml.serve.predlog import PredictionLog
from cd4ml.serve.schema import RequestSchema, describe_errors, one_or_many
from cd4ml.serve.watcher import ReleaseWatcher

STATIC = Path(__file__).parent / "static"
# Test traffic is answered and logged as such, and kept out of monitoring's windows and checks.
TRAFFIC_HEADER = "x-cd4ml-traffic"
TRAFFIC_KINDS = ("live", "test")
log = logging.getLogger("cd4ml.serve")


def _json(status: int, doc: Any) -> Response:
    return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def create_app(project: Project, *, log_predictions: bool = True, poll_seconds: float | None = None) -> FastAPI:
    """The service for one project; it serves whatever release holds the `champion` alias."""
    from cd4ml import tracking
    from cd4ml.release.registry import Registry

    cfg = project.config
    serving = cfg.serving
    schema = RequestSchema(cfg)

    def registry() -> Registry:
        return Registry.for_project(project)

    cache = project.state_dir / "cache" / "releases"
    store = hashlib.sha256(tracking.tracking_uri(project).encode()).hexdigest()[:16]
    watcher = ReleaseWatcher(registry, cache, poll_seconds or serving.poll_seconds,
                             resume_file=cache / cfg.registry.model_name / f"champion-{store}.json")
    predlog = PredictionLog(project.resolve(serving.log_dir), max_bytes=serving.log_max_bytes) if log_predictions \
        else None
    metrics = ServiceMetrics(project.monitor_dir, multiproc_dir=multiprocess_dir())
    batcher = MicroBatcher(serving.merge_max_rows, schema.to_batch, metrics.calls.inc, serving.offload_rows)

    # Actuals are kept even with --no-log: a client that sends them wants them stored.
    actuals_log = PredictionLog(project.resolve(serving.log_dir), max_bytes=serving.log_max_bytes, prefix="actuals")
    feedback_schema = FeedbackSchema(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if predlog is not None:
            predlog.start()
        actuals_log.start()
        watcher.start()
        metrics.start(watcher, predlog)
        yield
        watcher.stop()
        batcher.close()  # predictions still in flight are answered and logged before the log closes
        if predlog is not None:
            predlog.close()
        actuals_log.close()
        metrics.stop(watcher, predlog)

    telemetry = serving.opentelemetry
    # /docs loads Swagger UI's script and styles from fastapi-offline's package, so it works offline.
    # No /redoc: ReDoc fetches its logo from a CDN whatever is served.
    app = FastAPIOffline(title=f"cd4ml: {cfg.project}", lifespan=lifespan, redoc_url=None,
                         telemetry={"tracing": telemetry, "metrics": telemetry, "logs": telemetry},
                         description=f"Predictions of `{cfg.target}` from the champion release of "
                                     f"`{cfg.registry.model_name}`.")
    app.state.watcher = watcher
    app.state.predlog = predlog
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    no_champion = {"detail": "no champion release yet: run `cd4ml run` until a model passes the acceptance gate"}

    async def read_records(request: Request) -> list[Any] | tuple[Any] | Response:
        """The body's records (a 1-tuple for a single JSON object), or the error answer."""
        refused = media_type_refusal(request.headers.get("content-type"))
        if refused:
            return _json(415, {"detail": refused})
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit():
            return _json(400, {"detail": "Content-Length is not a number"})
        if int(declared) > serving.max_body_bytes:
            return _json(413, {"detail": f"body of {declared} bytes exceeds {serving.max_body_bytes}"})
        body = await read_body(request, serving.max_body_bytes)
        if body is None:
            return _json(413, {"detail": f"body exceeds {serving.max_body_bytes} bytes"})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _json(422, {"detail": f"body is not valid JSON: {exc}"})
        records = (data,) if isinstance(data, dict) else data
        if not isinstance(records, (list, tuple)) or not records:
            return _json(422, {"detail": "body must be a record (JSON object) or a non-empty list of records"})
        if len(records) > serving.max_records:
            return _json(413, {"detail": f"{len(records)} records exceed the limit of {serving.max_records}"})
        return records

    async def predict(request: Request) -> Response:
        """POST /predict (documented in `openapi` below): one record or a list of records."""
        started = time.perf_counter()
        live = watcher.current
        try:
            response = await _predict(request, started, live)
        except Exception:  # answered 500 by the server; counted so the error-rate alert sees it
            metrics.request(live.version if live else None, 500, time.perf_counter() - started)
            raise
        metrics.request(live.version if live else None, response.status_code, time.perf_counter() - started)
        return response

    async def _predict(request: Request, started: float, live: Any) -> Response:
        if live is None:
            return _json(503, no_champion)
        traffic = request.headers.get(TRAFFIC_HEADER, "live")
        if traffic not in TRAFFIC_KINDS:
            return _json(400, {"detail": f"header {TRAFFIC_HEADER}: {traffic[:40]!r} is not one of "
                                         f"{', '.join(TRAFFIC_KINDS)} (or absent, meaning live)"})
        client_id = request.headers.get("x-request-id")
        refused = request_id_refusal(client_id)
        if refused:
            return _json(400, {"detail": refused})
        records = await read_records(request)
        if isinstance(records, Response):
            return records
        single = isinstance(records, tuple)
        try:
            rows = schema.validate(records)
        except ValidationError as exc:
            return _json(422, {"detail": "invalid input", "errors": describe_errors(exc, single)})
        answer = await batcher.predict(live.release, rows, schema.nulls(rows))
        pred, fallback, unknown = answer.predictions, answer.fallback, answer.unknown
        if fallback.any() and serving.unknown_categories == "reject":
            errors = [{"record": None if single else int(i), "field": col, "reason": "never seen in training",
                       "value": records[int(i)].get(col)}
                      for col, mask in unknown.items() for i in np.flatnonzero(mask)]
            return _json(422, {"detail": "unknown categories", "errors": errors})
        metrics.predicted(live.version, pred, int(fallback.sum()))
        # Always the service's own id, so ids are unique whatever clients send; theirs is kept beside it.
        request_id = secrets.token_hex(16)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if predlog is not None:
            now = dt.datetime.now(dt.timezone.utc).isoformat()
            predlog.emit_many([
                {"request_id": request_id, "record": i, "time": now, "model_version": live.version,
                 "inputs": rec, "output": p, "fallback": f, "latency_ms": latency_ms, "traffic": traffic,
                 "client_request_id": client_id}
                for i, (rec, p, f) in enumerate(zip(records, pred.tolist(), fallback.tolist()))])
        if single:
            doc = {"request_id": request_id, "model_version": live.version, "prediction": float(pred[0]),
                   "fallback": bool(fallback[0])}
            if fallback[0]:
                doc["unknown"] = [c for c, m in unknown.items() if m[0]]
        else:
            doc = {"request_id": request_id, "model_version": live.version, "predictions": pred,
                   "fallback": fallback}
        if traffic != "live":
            doc["traffic"] = traffic
        if client_id is not None:
            doc["client_request_id"] = client_id
        return _json(200, doc)

    app.router.routes.append(Route("/predict", _AsgiEndpoint(predict), methods=["POST"]))
    body_errors = {"413": {"description": "too many records or too large a body"},
                   "415": {"description": "a body that is not application/json"}}
    predict_doc = {"post": {
        "summary": "Predict", "operationId": "predict",
        "description": "Predict for one record (a JSON object) or a list of records. Send the header "
                       "`X-Cd4ml-Traffic: test` for probes and test batches: they are answered and logged as test "
                       "traffic and kept out of drift, live accuracy and the retraining checks.",
        "parameters": [{"name": "X-Cd4ml-Traffic", "in": "header", "required": False,
                        "description": "`test` marks test traffic; `live` (the default when absent) is real traffic",
                        "schema": {"type": "string", "enum": list(TRAFFIC_KINDS), "default": "live"}},
                       {"name": REQUEST_ID_HEADER, "in": "header", "required": False,
                        "description": "the client's own id for the request: answered and logged as "
                                       "`client_request_id`; `request_id` is always the service's (unique)",
                        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN, "maxLength": REQUEST_ID_MAX}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema.json_schema()}}},
        "responses": {"200": {"description": "prediction(s), model version, request id"},
                      "400": {"description": "an X-Cd4ml-Traffic or X-Request-ID header that is not accepted"},
                      **body_errors,
                      "422": {"description": "invalid records: each error names the record, field and reason"},
                      "503": {"description": "no champion release yet"}}}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = {**doc, "paths": {"/predict": predict_doc, **doc.get("paths", {})}}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    feedback_body = {"required": True, "content": {"application/json": {
        "schema": one_or_many(feedback_schema.model.model_json_schema())}}}

    @app.post("/feedback", status_code=202, openapi_extra={"requestBody": feedback_body},
              responses={202: {"description": "actuals accepted for the prediction store"},
                         400: {"description": "a Content-Length that is not a number"},
                         **{int(code): doc for code, doc in body_errors.items()},
                         422: {"description": "invalid actuals: each error names the record, field and reason"}})
    async def feedback(request: Request) -> Response:
        """Actuals for served predictions, by request id (+ record) or by the key columns.

        Accepted actuals are logged (prefix `actuals`) and joined to predictions by
        `cd4ml monitor`; duplicates and actuals for unknown predictions are counted there.
        """
        records = await read_records(request)
        if isinstance(records, Response):
            return records
        try:
            events = feedback_schema.events(list(records), source="http")
        except ValidationError as exc:
            return _json(422, {"detail": "invalid actuals",
                               "errors": describe_errors(exc, isinstance(records, tuple))})
        actuals_log.emit_many(events)
        return _json(202, {"accepted": len(events)})

    @app.get("/metrics", responses={200: {"content": {CONTENT_TYPE: {}}}})
    def prometheus_metrics() -> Response:
        """Prometheus metrics, text exposition format (all workers' when there are several)."""
        metrics.sync(watcher, predlog)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/health")
    async def health() -> Response:
        """The process is alive."""
        return _json(200, {"status": "alive"})

    @app.get("/ready")
    async def ready() -> Response:
        """A release is loaded and serving (503 otherwise); a failed swap is reported here.

        `registry_checked` is false while the service serves the last champion it remembers and the
        registry has not answered since the start."""
        live = watcher.current
        doc = {"ready": live is not None, "model_version": live.version if live else None,
               "last_error": watcher.last_error, "swaps": watcher.swaps,
               "registry_checked": watcher.registry_checked,
               "predictions_logged": predlog.written if predlog else None,
               "predictions_dropped": predlog.dropped if predlog else None,
               "actuals_logged": actuals_log.written, "actuals_dropped": actuals_log.dropped}
        if live is None:
            doc["detail"] = no_champion["detail"]
        return _json(200 if live else 503, doc)

    @app.get("/version")
    async def version() -> Response:
        """The live release: model version, data version, git commit, release time."""
        live = watcher.current
        return _json(200, live.info) if live else _json(503, no_champion)

    @app.get("/inputs")
    async def inputs() -> Response:
        """The request fields, their types and ranges, and the values the live model knows."""
        live = watcher.current
        fields = []
        for name, kind in schema.types.items():
            spec = cfg.schema_.columns[name]
            known = live.release.plan.known_values(name) if live else None
            fields.append({"name": name, "type": kind, "required": name in schema.required,
                           "min": spec.min, "max": spec.max, "categories": spec.categories,
                           "known_values": None if known is None else known[:1000].tolist()})
        return _json(200, {"project": cfg.project, "target": cfg.target, "time_column": cfg.time_column,
                           "model_version": live.version if live else None, "fields": fields})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


class _AsgiEndpoint:
    """A handler that Starlette routes to as a bare ASGI app.

    A plain function route is wrapped in FastAPI's dependency solving and Starlette's
    exception wrapper; for a one-record prediction those cost about a third of the request.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` with several workers: the project comes from the environment."""
    from cd4ml.release.estimators import import_lightgbm

    import_lightgbm()  # before the service's threads start: one of them imports MLflow
    project = load_project(os.environ["CD4ML_PROJECT_DIR"])
    poll = os.environ.get("CD4ML_POLL_SECONDS")
    return create_app(project, log_predictions=os.environ.get("CD4ML_LOG_PREDICTIONS", "1") == "1",
                      poll_seconds=float(poll) if poll else None)
