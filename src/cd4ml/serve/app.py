"""The prediction service: FastAPI over the live release.

The request path is lean on purpose: /predict is a bare ASGI route, the body is
parsed with orjson, records are validated by one compiled pydantic adapter, the
records of concurrent requests are merged (serve/batching.py) and their features
computed on numpy arrays by the release's own packaged code, and the response is
written with orjson. No DataFrame is built per request. Every prediction is
logged through a background writer that never blocks the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cd4ml.config import Project, ProjectConfig, ServingConfig, load_project
from cd4ml.release.package import Release
from cd4ml.serve.batching import MicroBatcher
from cd4ml.serve.explain import explain
from cd4ml.serve.door import (REQUEST_ID_HEADER, REQUEST_ID_MAX, REQUEST_ID_PATTERN, media_type_refusal, read_body,
                              request_id_refusal)
from cd4ml.serve.metrics import CONTENT_TYPE, ServiceMetrics, multiprocess_dir
from cd4ml.serve.history import HistoryStore, unforecastable
from cd4ml.serve.predlog import PredictionLog
from cd4ml.serve.schema import (FeedbackSchema, RequestSchema, answer_schema, describe_errors, error_body,
                                one_or_many)
from cd4ml.serve.watcher import ReleaseWatcher
from cd4ml.task import Task

STATIC = Path(__file__).parent / "static"
# Test traffic is answered and logged as such, and kept out of monitoring's windows and checks.
TRAFFIC_HEADER = "x-cd4ml-traffic"
PREDICT_PATH = "/predict"
TRAFFIC_KINDS = ("live", "test")
EXPLAIN_MAX_RECORDS = 100
NO_CHAMPION = {"detail": "no champion release yet: run `cd4ml run` until a model passes the acceptance gate"}
BODY_ERRORS = {"413": {"description": "too many records or too large a body"},
               "415": {"description": "a body that is not application/json"}}
FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "actuals accepted for the prediction store"},
    400: {"description": "a Content-Length that is not a number"},
    **{int(code): doc for code, doc in BODY_ERRORS.items()},
    422: {"description": "invalid actuals: each error names the record, field and reason (the first 100; "
                         "`errors_total` counts them when there are more)"}}
log = logging.getLogger("cd4ml.serve")


def _json(status: int, doc: Any) -> Response:
    return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


@dataclass(slots=True)
class HistoryRead:
    """The history store as a release last read it, at the store's `version`: the latest actual, and the
    rows its history features read, indexed when first needed (`SeriesHistory`)."""

    folder: Path
    version: int
    latest: np.datetime64 | None
    index: Any = None


@dataclass(slots=True)
class Service:
    """What the endpoints share, one per app (`app.state.service`): the live release, logs, metrics."""

    cfg: ProjectConfig
    schema: RequestSchema
    feedback_schema: FeedbackSchema
    watcher: ReleaseWatcher
    predlog: PredictionLog | None
    actuals_log: PredictionLog
    metrics: ServiceMetrics
    batcher: MicroBatcher
    history: HistoryStore | None  # with `forecast:`: each series' actuals, which history features read
    seeded: set[Path] = field(default_factory=set)  # the releases whose packaged history the store holds
    read: HistoryRead | None = None  # the store as the live release last read it

    @classmethod
    def for_project(cls, project: Project, *, log_predictions: bool, poll_seconds: float | None) -> Service:
        from cd4ml import tracking
        from cd4ml.release.registry import Registry

        cfg = project.config
        serving = cfg.serving
        schema = RequestSchema(cfg)
        cache = project.release_cache
        store = hashlib.sha256(tracking.tracking_uri(project).encode()).hexdigest()[:16]
        watcher = ReleaseWatcher(lambda: Registry.for_project(project), cache, poll_seconds or serving.poll_seconds,
                                 resume_file=cache / cfg.registry.model_name / f"champion-{store}.json")
        predlog = PredictionLog(project.resolve(serving.log_dir), max_bytes=serving.log_max_bytes) \
            if log_predictions else None
        # Actuals are kept even with --no-log: a client that sends them wants them stored.
        actuals_log = PredictionLog(project.resolve(serving.log_dir), max_bytes=serving.log_max_bytes,
                                    prefix="actuals")
        metrics = ServiceMetrics(project.monitor_dir, multiproc_dir=multiprocess_dir())
        history = HistoryStore.for_project(project)
        batcher = MicroBatcher(serving.merge_max_rows, schema.to_batch, metrics.calls.inc, serving.offload_rows)
        service = cls(cfg, schema, FeedbackSchema(cfg), watcher, predlog, actuals_log, metrics, batcher, history)
        batcher.history = service.history_rows
        return service

    def history_rows(self, release: Release, batch: Mapping[str, np.ndarray]) -> Any:
        """What `batch`'s history features read: every stored actual a forecast after the release's cut-off
        may read, indexed by the release's own code once and again only when the store's history has changed
        (a request then pays a version check, not a query and an index). None for a release without history
        features (or a project without a store: the release reads its packaged history alone)."""
        spec, store = release.spec.history, self.history
        if spec is None or store is None or release.history_end is None:
            return None
        read = self._read(release, store)
        if read.index is None:
            read.index = release.plan.history(store.rows_since(spec, release.history_end))
        return read.index

    def unforecastable(self, release: Release, rows: list[dict[str, Any]]) -> dict[int, str]:
        """The records (index -> why) whose history the service lacks (`serve.history.unforecastable`)."""
        spec, store = release.spec.history, self.history
        if spec is None or store is None:
            return {}
        latest = self._read(release, store).latest
        return unforecastable(spec, release.history_end, latest, self.schema.column(rows, spec.time))

    def _read(self, release: Release, store: HistoryStore) -> HistoryRead:
        """The store as `release` reads it now: read again when the release or the store's history changed."""
        if release.history_rows is not None and release.folder not in self.seeded:
            store.seed(release.history_rows)
            self.seeded.add(release.folder)
        version = store.version()
        read = self.read
        if read is None or read.folder != release.folder or read.version != version:
            read = self.read = HistoryRead(release.folder, version, store.latest())
        return read

    def start(self) -> None:
        if self.predlog is not None:
            self.predlog.start()
        self.actuals_log.start()
        if self.history is not None:
            self.history.start()
        self.watcher.start()
        self.metrics.start(self.watcher, self.predlog)

    def stop(self) -> None:
        self.watcher.stop()
        self.batcher.close()  # predictions still in flight are answered and logged before the log closes
        if self.predlog is not None:
            self.predlog.close()
        self.actuals_log.close()
        self.metrics.stop(self.watcher, self.predlog)
        if self.history is not None:
            self.history.close()


def create_app(project: Project, *, log_predictions: bool = True, poll_seconds: float | None = None) -> FastAPI:
    """The service for one project; it serves whatever release holds the `champion` alias."""
    service = Service.for_project(project, log_predictions=log_predictions, poll_seconds=poll_seconds)
    cfg = service.cfg
    telemetry = cfg.serving.opentelemetry
    # /docs loads Swagger UI's script and styles from fastapi-offline's package, so it works offline.
    # No /redoc: ReDoc fetches its logo from a CDN whatever is served.
    endpoint = _AsgiEndpoint(predict, service)
    app = FastAPIOffline(title=f"cd4ml: {cfg.project}", lifespan=lifespan, redoc_url=None,
                         telemetry={"tracing": telemetry, "metrics": telemetry, "logs": telemetry},
                         description=f"Predictions of `{cfg.target}` from the champion release of "
                                     f"`{cfg.registry.model_name}`.")
    if not telemetry:  # with telemetry on, its middleware sees /predict too
        _predict_first(app, endpoint)
    app.state.service = service
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.router.routes.append(Route(PREDICT_PATH, endpoint, methods=["POST"]))
    app.openapi = functools.partial(openapi, app, predict_doc(service.schema, answer_schema(cfg)))  # type: ignore[method-assign]
    feedback_body = {"required": True, "content": {"application/json": {
        "schema": one_or_many(service.feedback_schema.model.model_json_schema())}}}
    app.add_api_route("/feedback", feedback, methods=["POST"], status_code=202,
                      openapi_extra={"requestBody": feedback_body}, responses=FEEDBACK_RESPONSES)
    # Routes appended as they are: include_router would put them behind a routing layer of its own.
    app.router.routes.extend(router.routes)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    service.start()
    yield
    service.stop()


async def read_records(request: Request, serving: ServingConfig) -> list[Any] | tuple[Any] | Response:
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


async def predict(service: Service, request: Request) -> Response:
    """POST /predict (documented by `predict_doc`): one record or a list of records."""
    started = time.perf_counter()
    live = service.watcher.current
    try:
        response = await _predict(service, request, started, live)
    except Exception:  # answered 500 by the server; counted so the error-rate alert sees it
        service.metrics.request(live.version if live else None, 500, time.perf_counter() - started)
        raise
    service.metrics.request(live.version if live else None, response.status_code, time.perf_counter() - started)
    return response


async def _predict(service: Service, request: Request, started: float, live: Any) -> Response:
    if live is None:
        return _json(503, NO_CHAMPION)
    traffic = request.headers.get(TRAFFIC_HEADER, "live")
    if traffic not in TRAFFIC_KINDS:
        return _json(400, {"detail": f"header {TRAFFIC_HEADER}: {traffic[:40]!r} is not one of "
                                     f"{', '.join(TRAFFIC_KINDS)} (or absent, meaning live)"})
    client_id = request.headers.get("x-request-id")
    refused = request_id_refusal(client_id)
    if refused:
        return _json(400, {"detail": refused})
    explaining = explain_requested(request)
    if isinstance(explaining, Response):
        return explaining
    records = await read_records(request, service.cfg.serving)
    if isinstance(records, Response):
        return records
    if explaining and len(records) > EXPLAIN_MAX_RECORDS:
        return _json(413, {"detail": f"{len(records)} records to explain: at most {EXPLAIN_MAX_RECORDS} a request "
                                     "(an explanation costs milliseconds a record)"})
    single = isinstance(records, tuple)
    schema = service.schema
    try:
        rows = schema.validate(records)
    except ValidationError as exc:
        return _json(422, error_body("invalid input", describe_errors(exc, single)))
    stale = service.unforecastable(live.release, rows)
    if stale and service.cfg.serving.stale_history == "reject":
        time_column = service.cfg.time_column
        return _json(422, error_body("no history for these times", [
            {"record": None if single else i, "field": time_column, "reason": why, "value": records[i].get(time_column)}
            for i, why in sorted(stale.items())]))
    answer = await service.batcher.predict(live.release, rows, schema.nulls(rows))
    pred, fallback, unknown = answer.predictions, answer.fallback, answer.unknown
    if stale:  # serving.stale_history: fallback: answered from the history there is, and flagged
        mask = np.zeros(len(rows), dtype=bool)
        mask[list(stale)] = True
        fallback, unknown = fallback | mask, {**unknown, service.cfg.time_column: mask}
    if fallback.any() and service.cfg.serving.unknown_categories == "reject":
        errors = [{"record": None if single else int(i), "field": col, "reason": "never seen in training",
                   "value": records[int(i)].get(col)}
                  for col, mask in unknown.items() for i in np.flatnonzero(mask)]
        return _json(422, error_body("unknown categories", errors))
    service.metrics.predicted(live.version, pred, int(fallback.sum()))
    request_id = new_request_id()
    if service.history is not None and traffic == "live":  # its actuals may come back by this id
        service.history.note_served(request_id, rows)
    latency_ms = (time.perf_counter() - started) * 1000.0
    # The live release's task, not the project file's: a rollback answers in the old release's classes.
    task = live.release.task
    if service.predlog is not None:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        service.predlog.emit_many([
            {"request_id": request_id, "record": i, "time": now, "model_version": live.version,
             "inputs": rec, **out, "fallback": f, "latency_ms": latency_ms, "traffic": traffic,
             "client_request_id": client_id}
            for i, (rec, out, f) in enumerate(zip(records, logged_outputs(task, pred), fallback.tolist()))])
    if single:
        doc = {"request_id": request_id, "model_version": live.version, **task.answer(pred, True),
               "fallback": bool(fallback[0])}
        if fallback[0]:
            doc["unknown"] = [c for c, m in unknown.items() if m[0]]
    else:
        doc = {"request_id": request_id, "model_version": live.version, **task.answer(pred, False),
               "fallback": fallback}
    if explaining:
        try:
            explained = await _explanations(service, live.release, rows)
        except ValueError as exc:  # a model that cannot say
            return _json(400, {"detail": f"explain=true: {exc}"})
        doc.update({"explanation": explained[0]} if single else {"explanations": explained})
    if traffic != "live":
        doc["traffic"] = traffic
    if client_id is not None:
        doc["client_request_id"] = client_id
    return _json(200, doc)


def new_request_id() -> str:
    """The service's own id of a request (32 hex digits), unique whatever clients send (theirs is kept beside
    it): the time in nanoseconds, then 64 random bits. Ids in time order keep the history store's index of
    live requests appending at its end, not writing pages all over it."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def explain_requested(request: Request) -> bool | Response:
    """Whether the query asks `explain=true` (a request without a query string pays nothing), or the 400."""
    if not request.scope.get("query_string"):
        return False
    value = request.query_params.get("explain")
    if value is None or value in ("false", "0"):
        return False
    if value in ("true", "1"):
        return True
    return _json(400, {"detail": f"query parameter explain: {value[:20]!r} is not true or false"})


async def _explanations(service: Service, release: Release, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records' explanations, from the features their predictions were made from (the same history).
    TreeSHAP costs milliseconds a record: it runs on a thread (LightGBM lets the GIL go), not on the loop that
    answers the other requests."""
    batch = service.schema.to_batch(rows)
    X, _ = release.features_checked(batch, service.history_rows(release, batch))
    return await asyncio.to_thread(explain, release, X)


def logged_outputs(task: Task, pred: np.ndarray) -> list[dict[str, Any]]:
    """Each record's prediction as the log keeps it: `output` (the value, or the decided class label) and,
    for a classifier's (n, k) probabilities, `probabilities` (the classes' order)."""
    if pred.ndim == 1:
        return [{"output": p} for p in pred.tolist()]
    labels = task.labels(task.decide(pred))
    return [{"output": label, "probabilities": p} for label, p in zip(labels, pred.tolist())]


def predict_doc(schema: RequestSchema, answer: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI path item of /predict, which FastAPI does not see (a bare ASGI route)."""
    return {"post": {
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
                        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN, "maxLength": REQUEST_ID_MAX}},
                       {"name": "explain", "in": "query", "required": False,
                        "description": "`true` adds each record's explanation (LightGBM models): the contributions "
                                       "of its inputs to the raw score, which with `base` add up to `raw`",
                        "schema": {"type": "boolean", "default": False}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema.json_schema()}}},
        "responses": {"200": {"description": "prediction(s), model version, request id",
                              "content": {"application/json": {"schema": answer}}},
                      "400": {"description": "an X-Cd4ml-Traffic or X-Request-ID header that is not accepted, an "
                                             "explain value that is not true or false, or explain=true for a model "
                                             "that cannot explain"},
                      **BODY_ERRORS,
                      "422": {"description": "invalid records: each error names the record, field and reason (the first "
                                             "100; `errors_total` counts them when there are more)"},
                      "503": {"description": "no champion release yet"}}}}


def openapi(app: FastAPI, predict_path: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document of the app, /predict first; built once."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        app.openapi_schema = {**doc, "paths": {"/predict": predict_path, **doc.get("paths", {})}}
    return app.openapi_schema


async def feedback(request: Request) -> Response:
    """Actuals for served predictions, by request id (+ record) or by the key columns.

    Accepted actuals are logged (prefix `actuals`) and joined to predictions by
    `cd4ml monitor`; duplicates and actuals for unknown predictions are counted there.
    """
    service: Service = request.app.state.service
    records = await read_records(request, service.cfg.serving)
    if isinstance(records, Response):
        return records
    try:
        events = service.feedback_schema.events(list(records), source="http")
    except ValidationError as exc:
        return _json(422, error_body("invalid actuals", describe_errors(exc, isinstance(records, tuple))))
    service.actuals_log.emit_many(events)
    if service.history is not None:
        service.history.add_actuals(events)
    return _json(202, {"accepted": len(events)})


# The endpoints whose documentation is the same for every project; /feedback's body is the project's.
router = APIRouter()


@router.get("/metrics", responses={200: {"content": {CONTENT_TYPE: {}}}})
def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics, text exposition format (all workers' when there are several)."""
    service: Service = request.app.state.service
    service.metrics.sync(service.watcher, service.predlog)
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/health")
async def health() -> Response:
    """The process is alive."""
    return _json(200, {"status": "alive"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    """A release is loaded and serving (503 otherwise); a failed swap is reported here.

    `registry_checked` is false while the service serves the last champion it remembers and the
    registry has not answered since the start."""
    service: Service = request.app.state.service
    watcher, predlog, actuals_log = service.watcher, service.predlog, service.actuals_log
    live = watcher.current
    doc = {"ready": live is not None, "model_version": live.version if live else None,
           "last_error": watcher.last_error, "swaps": watcher.swaps,
           "registry_checked": watcher.registry_checked,
           "predictions_logged": predlog.written if predlog else None,
           "predictions_dropped": predlog.dropped if predlog else None,
           "actuals_logged": actuals_log.written, "actuals_dropped": actuals_log.dropped}
    if live is None:
        doc["detail"] = NO_CHAMPION["detail"]
    return _json(200 if live else 503, doc)


@router.get("/version")
async def version(request: Request) -> Response:
    """The live release: model version, data version, git commit, release time."""
    live = request.app.state.service.watcher.current
    return _json(200, live.info) if live else _json(503, NO_CHAMPION)


@router.get("/inputs")
async def inputs(request: Request) -> Response:
    """The request fields, their types and ranges, and the values the live model knows."""
    service: Service = request.app.state.service
    cfg, schema, live = service.cfg, service.schema, service.watcher.current
    fields = []
    for name, kind in schema.types.items():
        spec = cfg.schema_.columns[name]
        known = live.release.plan.known_values(name) if live else None
        fields.append({"name": name, "type": kind, "required": name in schema.required,
                       "min": spec.min, "max": spec.max, "categories": spec.categories,
                       "known_values": None if known is None else known[:1000].tolist()})
    return _json(200, {"project": cfg.project, "target": cfg.target, "time_column": cfg.time_column,
                       "model_version": live.version if live else None, "fields": fields})


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def _predict_first(app: FastAPI, endpoint: _AsgiEndpoint) -> None:
    """POST /predict answered before the app's middleware stack (built on first use, as before).

    For a one-record prediction FastAPI's five middlewares and the router's walk over the routes cost
    about a tenth of the request, and /predict needs none of them: it answers its own errors (4xx),
    counts a 500 in the metrics, and uvicorn answers an exception with the same 500 Starlette would.
    """
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = build()

        async def predict_first(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST" and \
                    scope["path"] in (PREDICT_PATH, scope.get("root_path", "") + PREDICT_PATH):
                await endpoint(scope, receive, send)
            else:
                await stack(scope, receive, send)

        return predict_first

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


class _AsgiEndpoint:
    """A handler that Starlette routes to as a bare ASGI app.

    A plain function route is wrapped in FastAPI's dependency solving and Starlette's
    exception wrapper; for a one-record prediction those cost about a third of the request.
    """

    def __init__(self, handler: Callable[[Service, Request], Awaitable[Response]], service: Service) -> None:
        self.handler = handler
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(self.service, Request(scope, receive))
        await response(scope, receive, send)


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` with several workers: the project comes from the environment."""
    from cd4ml.release.estimators import import_lightgbm

    import_lightgbm()  # before the service's threads start: one of them imports MLflow
    project = load_project(os.environ["CD4ML_PROJECT_DIR"])
    poll = os.environ.get("CD4ML_POLL_SECONDS")
    return create_app(project, log_predictions=os.environ.get("CD4ML_LOG_PREDICTIONS", "1") == "1",
                      poll_seconds=float(poll) if poll else None)
