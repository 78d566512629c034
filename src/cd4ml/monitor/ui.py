"""`cd4ml ui`: the monitoring dashboard, a static page over one JSON endpoint.

The page ships inside the package (no CDN, no external fonts): it works offline.
`report()` builds the monitoring report (see the report format); building one reads
the prediction store, so it runs in a worker thread and its result is reused for a
couple of seconds: the page's panels and quick reloads share one computation.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from pathlib import Path
from typing import Any, Callable

import orjson
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

STATIC = Path(__file__).parent / "static"
THEME = Path(__file__).parents[1] / "serve" / "static"  # the model page's look: theme.css, favicon
log = logging.getLogger("cd4ml.monitor.ui")


class CachedReport:
    """`report()` called at most once per `ttl` seconds, and never twice at the same time."""

    def __init__(self, report: Callable[[], dict[str, Any]], ttl: float = 2.0) -> None:
        self._report = report
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._body: bytes | None = None
        self._at = 0.0

    def _fresh(self) -> bytes | None:
        if self._body is not None and time.monotonic() - self._at < self._ttl:
            return self._body
        return None

    async def get(self) -> bytes:
        """The report as JSON bytes; raises whatever `report()` raised (failures are not cached)."""
        if (body := self._fresh()) is not None:
            return body
        async with self._lock:
            # Whoever waited on the lock gets the report the holder just built.
            if (body := self._fresh()) is not None:
                return body
            doc = await run_in_threadpool(self._report)
            # NaN/inf become null, numpy scalars are accepted: the page only ever sees valid JSON.
            self._body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
            self._at = time.monotonic()
            return self._body


def _page(title: str) -> str:
    # The title is the only server-side value in the page; escaped, it cannot inject markup.
    return (STATIC / "dashboard.html").read_text(encoding="utf-8").replace("{{title}}", html.escape(title))


def create_ui_app(report: Callable[[], dict[str, Any]], *, title: str, cache_seconds: float = 2.0) -> FastAPI:
    """The dashboard app: `GET /` (the page), `/static/...` (its assets), `GET /api/report` (the JSON)."""
    cached = CachedReport(report, ttl=cache_seconds)
    page = _page(title)
    app = FastAPI(title=f"cd4ml monitor: {title}", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/theme", StaticFiles(directory=THEME), name="theme")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/report", responses={503: {"description": "the report could not be built; `detail` says why"}})
    async def api_report() -> Response:
        """The monitoring report (format 1), rebuilt at most every few seconds."""
        try:
            body = await cached.get()
        except Exception as exc:  # noqa: BLE001 - any failure is the user's to see, not a 500 page
            log.warning("the monitoring report failed", exc_info=True)
            detail = str(exc) or type(exc).__name__
            return Response(orjson.dumps({"detail": detail}), status_code=503, media_type="application/json",
                            headers={"Cache-Control": "no-store"})
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    return app
