"""Slack's HTTP mode: `POST /slack/interactions`, verified, acknowledged at once, handed over.

Slack signs every request with the app's signing secret (HMAC-SHA256 over
`v0:<timestamp>:<body>`) and gives the app 3 seconds to answer. The route authenticates first
and parses second, so an unsigned caller learns nothing about what a valid request looks like:

    bad, missing or stale signature (over 5 minutes)  → 401, nothing submitted
    signed, but not a form with one JSON-object `payload` → 400
    signed and well-formed                            → sink.submit(payload, transport="http"), 200 empty
    the sink raised                                   → 503 empty: Slack shows the clicker an error,
                                                        which is the truth (the click was not taken);
                                                        logged with the sink's traceback

Logs name the reason and the client address, never the secret, the signature or the body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_sdk.signature import Clock, SignatureVerifier

from tfops.notify.interactions import InteractionSink
from tfops.web.forms import single_field

log = logging.getLogger(__name__)

INTERACTIONS_PATH = "/slack/interactions"
SIGNATURE_WINDOW_SECONDS = 300  # fixed inside SignatureVerifier; here only to say why a request was refused
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def slack_router(
    signing_secret: str,
    sink: InteractionSink,
    *,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The `POST /slack/interactions` route; `clock` gives the time the 5-minute window is checked against."""
    if not signing_secret or not signing_secret.strip():
        raise ValueError(
            "the Slack signing secret is empty: HTTP mode cannot verify requests without it "
            "(copy it from the Slack app's Basic Information page)"
        )
    verifier = SignatureVerifier(signing_secret, clock=_FunctionClock(clock))
    router = APIRouter(tags=["slack"])

    @router.post(
        INTERACTIONS_PATH,
        summary="Slack interactivity (HTTP mode): button clicks",
        response_class=Response,
        responses={
            200: {"description": "verified and accepted; empty body"},
            400: {"description": "signed, but not a form with a JSON `payload` object"},
            401: {"description": "missing, invalid or expired Slack signature"},
            413: {"description": "body over the server's limit"},
            503: {"description": "verified, but could not be accepted now; click again"},
        },
    )
    async def slack_interactions(request: Request) -> Response:
        body = await request.body()
        client = request.client.host if request.client else "unknown client"
        problem = signature_problem(verifier, body, request.headers, now=clock())
        if problem is not None:
            log.warning("refused a Slack interaction from %s: %s", client, problem)
            return JSONResponse({"detail": "invalid or expired Slack signature"}, status_code=401)
        try:
            payload = interaction_payload(request.headers.get("content-type", ""), body)
        except ValueError as exc:
            log.warning("refused a signed Slack interaction from %s: %s", client, exc)
            return JSONResponse({"detail": str(exc)}, status_code=400)
        try:
            sink.submit(payload, transport="http")
        except Exception:
            log.exception("could not take a Slack %s interaction; Slack will show an error", _kind(payload))
            return Response(status_code=503)
        return Response(status_code=200)

    return router


def signature_problem(
    verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str], *, now: float
) -> str | None:
    """Why the request is not verifiably from Slack, or None when it is."""
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature header"
    try:
        age = now - int(timestamp)
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if abs(age) > SIGNATURE_WINDOW_SECONDS:
        return f"timestamp is {abs(age):.0f}s from now, outside the {SIGNATURE_WINDOW_SECONDS}s window"
    try:
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except UnicodeDecodeError:
        return "body is not UTF-8"
    return None if valid else "signature does not match the body"


def interaction_payload(content_type: str, body: bytes) -> dict[str, Any]:
    """The JSON object in the form field `payload`, as Slack sends it; ValueError says what is wrong."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE:
        raise ValueError(f"Content-Type must be {FORM_CONTENT_TYPE}")
    document = single_field(body, "payload")
    try:
        payload = json.loads(document)
    except ValueError:
        raise ValueError("`payload` is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("`payload` is not a JSON object")
    return payload


class _FunctionClock(Clock):
    """SignatureVerifier reads the time from an object with `now()`, not from a function."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def _kind(payload: Mapping[str, Any]) -> str:
    kind = payload.get("type")
    return kind if isinstance(kind, str) and kind.isidentifier() else "unknown"
