"""Checks at the service's door, before a body is parsed: media type, request id, body size.

Each check answers with the reason a request is refused (None: let it in), so the route
turns it into a 4xx naming the header or limit; nothing here raises for client input.
"""

from __future__ import annotations

import re

from starlette.requests import Request

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_MAX = 128
# Ids travel into logs, the prediction store and terminals: plain characters only.
REQUEST_ID_PATTERN = rf"^[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX}}}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def media_type_refusal(content_type: str | None) -> str | None:
    """Why a body of this Content-Type is refused (415), or None for JSON in UTF-8.

    Only JSON is taken: a form or `text/plain` post is what any web page can send to a
    service on localhost without the browser asking it first (CSRF)."""
    media, *params = (content_type or "").split(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = media[:80] or "none"
        return f"Content-Type {shown!r} is not accepted: send the body as application/json"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"Content-Type charset {value.strip()[:40]!r} is not accepted: JSON bodies are UTF-8"
    return None


def request_id_refusal(value: str | None) -> str | None:
    """Why a client's X-Request-ID is refused (400), or None when absent or well formed."""
    if value is None or _REQUEST_ID.fullmatch(value):  # fullmatch: `$` alone lets a final newline in
        return None
    return (f"header {REQUEST_ID_HEADER}: {value[:40]!r}{'...' if len(value) > 40 else ''} is not 1 to "
            f"{REQUEST_ID_MAX} characters of A-Z a-z 0-9 . _ : -")


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, read chunk by chunk; None as soon as it passes `limit` bytes.

    A chunked body has no Content-Length to check first: counting while reading keeps
    at most `limit` bytes (plus one chunk) in memory, whatever the client sends."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
