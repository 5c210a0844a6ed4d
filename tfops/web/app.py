"""The ASGI app of the daemon, built once from the routers of the enabled features.

Two guards wrap everything FastAPI does, outermost first:

1. `ContainErrors`: an exception that escapes a handler is logged once, with the method and path
   (never the query string or the body), before the client gets a short JSON 500. Starlette
   re-raises every error after answering it; without this guard uvicorn would log it a second
   time and drop the connection.
2. `BodyCap`: the request body is read up to `max_body` bytes before any route runs. A declared
   Content-Length over the cap is answered 413 without reading a byte; a chunked body that grows
   over it is answered 413 as soon as it does. Handlers therefore never see an oversized body,
   whichever way they read it.

Error bodies use FastAPI's shape, `{"detail": "..."}`, so clients see one format everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tfops import __version__

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: Slack payloads and webhook events are far smaller
BODY_TIMEOUT = 30.0  # seconds for a whole request body to arrive: a trickle is refused (408)
_TOO_LARGE = object()
INTERNAL_ERROR = {"detail": "internal server error"}
_LOGGED = "tfops.error_logged"  # scope key: the error was logged before its 500 went out


def create_app(
    routers: Sequence[APIRouter] = (), *, max_body: int = DEFAULT_MAX_BODY, body_timeout: float = BODY_TIMEOUT
) -> FastAPI:
    """The daemon's app with the given routers; request bodies over `max_body` bytes get 413, and
    bodies that take longer than `body_timeout` seconds to arrive get 408."""
    if max_body < 0:
        raise ValueError(f"max_body must be 0 or more bytes, not {max_body}")
    app = _GuardedFastAPI(
        max_body=max_body,
        body_timeout=body_timeout,
        title="tfops",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        exception_handlers={Exception: _internal_error_response},
    )
    for router in routers:
        app.include_router(router)
    return app


class _GuardedFastAPI(FastAPI):
    """FastAPI with `ContainErrors` and `BodyCap` outside its own middleware stack.

    Added with `add_middleware`, they would sit inside Starlette's ServerErrorMiddleware, which
    re-raises every error to the server after answering; outside it, the error stops here.
    """

    def __init__(self, *, max_body: int, body_timeout: float, **kwargs: object) -> None:
        self.tfops_max_body = max_body
        self.tfops_body_timeout = body_timeout
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return ContainErrors(BodyCap(inner, self.tfops_max_body, self.tfops_body_timeout))


async def _internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    # Logged here, before the answer leaves, so whoever reads the reply can already read the log.
    _log_unhandled(request.scope, exc)
    request.scope[_LOGGED] = True
    return JSONResponse(INTERNAL_ERROR, status_code=500)


def _log_unhandled(scope: Scope, exc: Exception) -> None:
    log.error("unhandled error answering %s %s", scope["method"], scope["path"], exc_info=exc)


class ContainErrors:
    """Log an escaped exception without the request's content; answer 500 if nothing was sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last guard before the server: log, answer, stop
            if not scope.get(_LOGGED):
                _log_unhandled(scope, exc)
            if not response_started:
                await send_json(send, 500, INTERNAL_ERROR)


class BodyCap:
    """Read the whole request body, at most `max_body` bytes, before the app runs; else 413."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        if declared is not None and declared > self.max_body:
            await self._refuse(scope, send, f"Content-Length {declared}")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.body_timeout)
        except TimeoutError:
            log.warning("refused %s %s: body not received within %.0fs", scope["method"], scope["path"],
                        self.body_timeout)  # fmt: skip
            await send_json(send, 408, {"detail": "request body too slow"}, close=True)
            return
        if body is _TOO_LARGE:
            await self._refuse(scope, send, "a streamed body")
            return
        if isinstance(body, bytes):
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | object | None:
        """The whole body; _TOO_LARGE past the cap; None when the client left before sending it."""
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                return None  # nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return _TOO_LARGE
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        return b"".join(chunks)

    async def _refuse(self, scope: Scope, send: Send, what: str) -> None:
        # "Connection: close": the rest of an oversized body is never read (it could be endless).
        log.warning(
            "refused %s %s: %s over the %d-byte body limit",
            scope["method"],
            scope["path"],
            what,
            self.max_body,
        )
        await send_json(
            send, 413, {"detail": f"request body is larger than {self.max_body} bytes"}, close=True
        )


def declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length header as a number; None when absent or unreadable (the server rejects those)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then defers to the server (disconnects)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def send_json(send: Send, status: int, content: object, *, close: bool = False) -> None:
    """A complete JSON response sent straight through ASGI (for guards that run outside FastAPI).

    `close`: end the connection after it, leaving whatever the client still sends unread."""
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
