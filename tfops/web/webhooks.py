"""Webhooks from Git hosts: `POST /webhooks/{github,gitlab,gitea,generic}`, a hint to fetch now.

A webhook is never a source of code (design principle 1). A delivery that passes every check
becomes one `FetchHint` handed to the daemon, which fetches the branch itself and reconciles what
the fetched head says; the payload's SHA is kept for correlation only. So a forged or replayed
delivery can at most cause a fetch, and even that needs the secret.

Every request goes through the same steps, in this order:

    1. authenticate   the route's secret against the raw body    → 401 "unauthorized", body unread
    2. parse          event header, delivery id (a plain token:
                      [A-Za-z0-9._:-], at most 200), content
                      type, JSON object                           → 400 "bad_request"
    3. filter         the configured repository and branch, and
                      an event that changes that branch           → 202 {"status": "ignored", "reason"}
                      (GitHub `ping`                               → 200 {"status": "pong"})
    4. deduplicate    (source, delivery id) among the last N
                      authenticated deliveries                    → 202 {"status": "duplicate"}
    5. hand over      sink.request_fetch(hint), which returns at once → 202 {"status": "accepted"}

Only an authenticated delivery is remembered, so forgeries cannot fill the memory with ids that
would make a real delivery look like a duplicate. A route exists only when its secret is
configured (otherwise FastAPI answers 404); a blank secret is refused when the secrets are built.

How each host signs and describes a delivery is in tfops/web/forges.py.

Logs name the source, event, delivery id, result and reason (header values trimmed to printable
ASCII); never a secret, signature, token or body. Handlers do no I/O besides the sink call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tfops.triggers import FetchHint
from tfops.web.forges import ROUTES, BadDelivery, RepoMatch, Verdict, WebhookRoute, repo_path, shown

# Importable from here, where the daemon and the tests have always found them.
__all__ = [
    "RESULTS",
    "SOURCES",
    "FetchHint",
    "FetchRequests",
    "RecentDeliveries",
    "RepoMatch",
    "WebhookSecrets",
    "receive_webhook",
    "repo_path",
    "webhook_router",
]

log = logging.getLogger(__name__)

SOURCES = ("github", "gitlab", "gitea", "generic")
RESULTS = ("accepted", "duplicate", "ignored", "ping", "unauthorized", "bad_request", "unavailable")


class FetchRequests(Protocol):
    def request_fetch(self, hint: FetchHint) -> None:
        """Note the wish to fetch and return at once; the daemon debounces bursts into one fetch."""


@dataclass(frozen=True)
class WebhookSecrets:
    """One secret per route; None turns that route off (404). Never shown in reprs."""

    github: str | None = field(default=None, repr=False)
    gitlab: str | None = field(default=None, repr=False)
    gitea: str | None = field(default=None, repr=False)
    generic: str | None = field(default=None, repr=False)  # the bearer token of /webhooks/generic

    def __post_init__(self) -> None:
        for source in SOURCES:
            secret = getattr(self, source)
            if secret is not None and not secret.strip():
                raise ValueError(
                    f"the {source} webhook secret is empty: the route could not tell real deliveries "
                    f"from forged ones (set a secret, or leave it unset to turn /webhooks/{source} off)"
                )

    def of(self, source: str) -> str | None:
        return getattr(self, source)


def webhook_router(
    secrets: WebhookSecrets,
    repo: RepoMatch,
    sink: FetchRequests,
    *,
    on_delivery: Callable[[str, str], None] = lambda source, result: None,
    remember: int = 1000,
) -> APIRouter:
    """The routes of the configured secrets; `on_delivery(source, result)` is called once per request.

    `remember` is how many authenticated delivery ids are kept to recognise duplicates.
    """
    if remember < 1:
        raise ValueError(f"remember must be 1 or more delivery ids, not {remember}")
    recent = RecentDeliveries(remember)
    router = APIRouter(tags=["webhooks"])
    for route in ROUTES:
        secret = secrets.of(route.source)
        if secret is not None:
            desk = WebhookDesk(route, secret.encode(), repo, sink, recent, on_delivery)
            router.add_api_route(
                f"/webhooks/{route.source}",
                receive_webhook,
                dependencies=[Depends(desk.attach)],
                methods=["POST"],
                summary=route.summary,
                response_class=JSONResponse,
                status_code=202,
                responses=_RESPONSES,
                name=f"webhook_{route.source}",
            )
    return router


_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": 'GitHub ping, verified: `{"status": "pong"}`'},
    202: {"description": "`accepted` (a fetch was requested), `duplicate`, or `ignored` with a `reason`"},
    400: {"description": "authentic, but not a well-formed delivery (content type, JSON, event, id)"},
    401: {"description": "missing or wrong signature or token"},
    413: {"description": "body over the server's limit"},
    503: {"description": "authentic, but the fetch could not be requested now; the host may retry"},
}


# --------------------------------------------------------------------------- the handler

# What a refused caller is told: which kind of credential, never what was wrong with it.
_UNAUTHORIZED = {
    "github": "invalid or missing signature",
    "gitlab": "invalid or missing token",
    "gitea": "invalid or missing signature",
    "generic": "invalid or missing token",
}


class RecentDeliveries:
    """The last `capacity` delivery keys; the oldest is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def remember(self, key: tuple[str, str]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


@dataclass(frozen=True)
class WebhookDesk:
    """What one enabled route works with: the host's checks, its secret, the repository to match,
    where fetch requests go and the duplicate memory (shared by the routes of one router).

    The route's first dependency (`attach`) puts it on the request; the one module-level handler,
    `receive_webhook`, takes it as a `Desk` parameter.
    """

    route: WebhookRoute
    secret: bytes = field(repr=False)
    repo: RepoMatch
    sink: FetchRequests
    recent: RecentDeliveries
    on_delivery: Callable[[str, str], None]

    async def attach(self, request: Request) -> None:
        request.state.tfops_webhook = self

    def finish(
        self, result: str, status: int, content: dict[str, str], **log_fields: str | None
    ) -> JSONResponse:
        source = self.route.source
        _log_delivery(source, result, **log_fields)
        try:
            self.on_delivery(source, result)
        except Exception:  # the daemon's counter failing must not change the answer
            log.exception("on_delivery callback failed for a %s webhook", source)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 and source == "generic" else None
        return JSONResponse(content, status_code=status, headers=headers)


async def _desk(request: Request) -> WebhookDesk:
    desk: WebhookDesk = request.state.tfops_webhook
    return desk


Desk = Annotated[WebhookDesk, Depends(_desk)]


# No docstring: FastAPI would publish it as the operation's description.
async def receive_webhook(request: Request, desk: Desk) -> JSONResponse:
    body = await request.body()
    headers = request.headers
    client = request.client.host if request.client else "unknown client"
    route = desk.route
    problem = route.authenticate(desk.secret, body, headers)
    if problem is not None:
        detail = _UNAUTHORIZED[route.source]
        return desk.finish("unauthorized", 401, {"detail": detail}, client=client, reason=problem)
    try:
        event = route.event(headers)
        delivery = route.delivery_id(headers)
        payload = route.payload(headers.get("content-type", ""), body)
    except BadDelivery as exc:
        return desk.finish("bad_request", 400, {"detail": str(exc)}, client=client, reason=str(exc))
    return _hand_over(desk, event, delivery, route.judge(event, payload, desk.repo))


def _hand_over(desk: WebhookDesk, event: str, delivery: str | None, verdict: Verdict) -> JSONResponse:
    """Steps 3 to 5 for a well-formed delivery. Not a coroutine, and the handler awaits nothing
    after its body: deliveries of one id that arrive together are still checked and remembered one
    after the other on the server's event loop."""
    source = desk.route.source
    where = {"event": event, "delivery": delivery}
    if verdict.action == "ping":
        return desk.finish("ping", 200, {"status": "pong"}, **where)
    if verdict.action == "ignore":
        content = {"status": "ignored", "reason": verdict.reason}
        return desk.finish("ignored", 202, content, **where, reason=verdict.reason)
    key = (source, delivery) if delivery is not None else None
    if key is not None and key in desk.recent:
        return desk.finish("duplicate", 202, {"status": "duplicate"}, **where)
    try:
        desk.sink.request_fetch(FetchHint(source, event, delivery, verdict.sha, verdict.ref))
    except Exception:
        log.exception("could not request a fetch for a %s webhook; the host may retry it", source)
        return desk.finish("unavailable", 503, {"detail": "cannot take the delivery now; retry"}, **where)
    if key is not None:
        desk.recent.remember(key)
    return desk.finish("accepted", 202, {"status": "accepted"}, **where, sha=verdict.sha)


def _log_delivery(
    source: str,
    result: str,
    *,
    event: str | None = None,
    delivery: str | None = None,
    client: str | None = None,
    reason: str | None = None,
    sha: str | None = None,
) -> None:
    parts = [f"{source} webhook" + (f" from {client}" if client is not None else "")]
    if event is not None:
        parts.append(f"event {shown(event)}")
    if delivery is not None:
        parts.append(f"delivery {shown(delivery)}")
    if sha is not None:
        parts.append(f"sha {sha}")
    message = f"{', '.join(parts)}: {result}" + (f" ({reason})" if reason else "")
    level = logging.WARNING if result in ("unauthorized", "bad_request", "unavailable") else logging.INFO
    log.log(level, "%s", message)
