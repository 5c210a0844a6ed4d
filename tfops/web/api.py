"""The daemon's JSON API: read stacks and runs, ask for a plan or a drift check. Bearer tokens.

    GET  /api/stacks                 every stack: policy, heads, drift, last run, next drift check
    GET  /api/runs?stack=&limit=     runs, newest first (limit 1..500, default 20)
    GET  /api/runs/{run_id}          one run with its redacted summary, events and decisions
    POST /api/stacks/{name}/plan     queue a plan run   (write scope)
    POST /api/stacks/{name}/drift    queue a drift check (write scope)

Authentication comes before anything else, so a caller without a token learns nothing, not even
which stacks exist: no or an unknown token → 401 with `WWW-Authenticate: Bearer`; a read token on
a write route → 403. The presented token is compared with every configured one, always all of
them, through SHA-256 digests and `hmac.compare_digest`, so neither which token matched nor how
long the right one is shows in the response time.

What the API shows is what the store holds, and the store only holds redacted data (summaries,
errors, event messages). Host details are left out on purpose: no log path and no plan file path
(they tell a caller how the VM is laid out and are useless off the host; `tfops show` on the host
has them). The free texts of a run (its error, event messages and trigger note) can still quote such
paths, in the commands they name: they go through the daemon's `scrub` first. Handlers only read
the store or hand a request to `queue_run`; the stack name is matched exactly against the
configured stacks and never reaches git, Terraform or a shell.
"""

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tfops.errors import TfopsError
from tfops.models import Run, RunKind, Stack
from tfops.store.store import Store
from tfops.views import Scrub, unchanged
from tfops.web.api_models import QueueAnswer, RunDetail, RunView, StackView, run_detail, run_view, stack_view

log = logging.getLogger(__name__)

MAX_RUNS = 500
DEFAULT_RUNS = 20
MAX_RUN_ID = 2**63 - 1  # the store's ids are signed 64-bit integers; a larger one is no id at all
_REALM = 'Bearer realm="tfops"'
# Token names end up in run triggers ("api:ci"), logs and the audit log: keep them plain words.
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_NOT_QUEUED = (
    "no new run was queued: an equivalent run is already waiting for this stack, the stack has "
    "nothing to check yet (a drift check needs a first apply), or the daemon is stopping"
)

Scope = Literal["read", "write"]


@dataclass(frozen=True)
class ApiToken:
    """A bearer token from the configuration. `write` implies `read`. The secret is never shown."""

    name: str  # for logs and the audit trail, e.g. "ci"
    token: str = field(repr=False)  # the secret
    scope: Scope = "read"

    def __post_init__(self) -> None:
        if not _TOKEN_NAME.fullmatch(self.name):
            raise ValueError(
                f"API token name {self.name!r} must be 1-64 letters, digits or _.@- (it names the caller)"
            )
        if not self.token or not self.token.strip():
            raise ValueError(f"API token {self.name!r} is empty: set a long random secret")
        if self.token != self.token.strip():
            raise ValueError(f"API token {self.name!r} has leading or trailing whitespace")
        if self.scope not in ("read", "write"):
            raise ValueError(f"API token {self.name!r} has scope {self.scope!r}; use 'read' or 'write'")

    @property
    def may_write(self) -> bool:
        return self.scope == "write"

    @property
    def actor(self) -> str:
        """Who a run queued with this token was asked by."""
        return f"api:{self.name}"


# --------------------------------------------------------------------------- authentication


class TokenTable:
    """The configured tokens by SHA-256 digest; `find` compares against all of them, every time."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        if not tokens:
            raise ValueError("the JSON API needs at least one API token; without tokens do not mount it")
        names = [token.name for token in tokens]
        if len(set(names)) != len(names):
            raise ValueError("two API tokens share a name; each caller needs its own name")
        digests = [_digest(token.token.encode("utf-8")) for token in tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two API tokens share a secret; give each token its own secret")
        self._entries = list(zip(digests, tokens, strict=True))

    def find(self, presented: str) -> ApiToken | None:
        """The token an Authorization header presents."""
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent.
        return self.find_secret(presented.encode("latin-1", "replace"))

    def find_secret(self, secret: bytes) -> ApiToken | None:
        """The configured token whose secret is `secret` (a form field: its UTF-8 bytes)."""
        wanted = _digest(secret)
        found = None
        for digest, token in self._entries:
            if hmac.compare_digest(digest, wanted):
                found = token
        return found


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _refuse(request: Request, status: int, reason: str, detail: str, challenge: str) -> HTTPException:
    client = request.client.host if request.client else "unknown"
    log.warning("API refused %s %s from %s: %s", request.method, request.url.path, client, reason)
    return HTTPException(status, detail=detail, headers={"WWW-Authenticate": challenge})


# --------------------------------------------------------------------------- what handlers use


@dataclass(frozen=True)
class ApiContext:
    """What the handlers of one mounted API read and call.

    The router's first dependency (`attach`) puts it on the request; every later dependency and
    handler takes it as an `Api` parameter. So the handlers are plain module-level functions, and
    two apps with different stores can mount the API side by side.
    """

    store: Store
    stacks: Callable[[], Mapping[str, Stack]]
    queue_run: Callable[[str, RunKind, str], Run | None]
    tokens: TokenTable
    next_check: Callable[[str], datetime | None]
    scrub: Scrub

    async def attach(self, request: Request) -> None:
        request.state.tfops_api = self


async def _context(request: Request) -> ApiContext:
    context: ApiContext = request.state.tfops_api
    return context


Api = Annotated[ApiContext, Depends(_context)]

_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="an API token from the tfops configuration; write endpoints need one with write scope",
)


def authenticated(
    request: Request, api: Api, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
) -> ApiToken:
    if credentials is None:
        raise _refuse(request, 401, "no bearer token", "a bearer token is required", _REALM)
    token = api.tokens.find(credentials.credentials)
    if token is None:
        raise _refuse(
            request,
            401,
            "unknown token",
            "the bearer token is not valid",
            f'{_REALM}, error="invalid_token"',
        )
    return token


def may_write(request: Request, token: Annotated[ApiToken, Depends(authenticated)]) -> ApiToken:
    if not token.may_write:
        raise _refuse(
            request,
            403,
            f"token {token.name!r} has read scope only",
            "this token may only read; queuing runs needs a token with write scope",
            f'{_REALM}, error="insufficient_scope", scope="write"',
        )
    return token


# --------------------------------------------------------------------------- the handlers
# No docstrings here: FastAPI would publish them as the operations' descriptions.


def list_stacks(api: Api) -> list[StackView]:
    configured = api.stacks()
    known = {overview.state.name: overview for overview in api.store.stack_overview()}  # fixed queries
    incidents = {incident.stack: incident for incident in api.store.open_incidents()}
    views = []
    for name in sorted(configured.keys() | known.keys()):
        found = known.get(name)
        state, last = (found.state, found.last_run) if found else (None, None)
        views.append(
            stack_view(name, state, configured.get(name), last, api.next_check(name), incidents.get(name))
        )
    return views


def list_runs(
    api: Api,
    stack: Annotated[str | None, Query(max_length=200, description="only this stack's runs")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = DEFAULT_RUNS,
) -> list[RunView]:
    return [run_view(run, api.scrub) for run in api.store.list_runs(stack=stack, limit=limit)]


def get_run(run_id: Annotated[int, Path(ge=1, le=MAX_RUN_ID)], api: Api) -> RunDetail:
    run = api.store.get_run(run_id)
    if run is None:
        raise HTTPException(404, detail=f"no run {run_id}")
    return run_detail(run, api.store.events(run_id), api.store.decisions(run_id), api.scrub)


StackName = Annotated[str, Path(max_length=200)]
Writer = Annotated[ApiToken, Depends(may_write)]


def queue_plan(name: StackName, response: Response, token: Writer, api: Api) -> QueueAnswer:
    return _queue_answer(api, name, RunKind.PLAN, token, response)


def queue_drift(name: StackName, response: Response, token: Writer, api: Api) -> QueueAnswer:
    return _queue_answer(api, name, RunKind.DRIFT, token, response)


def _queue_answer(
    api: ApiContext, name: str, kind: RunKind, token: ApiToken, response: Response
) -> QueueAnswer:
    if name not in api.stacks():
        raise HTTPException(404, detail=f"no configured stack named {name!r}")
    run = _queue(api.queue_run, name, kind, token)
    _audit(api.store, token, kind, name, run)
    if run is None:
        response.status_code = 200
        return QueueAnswer(queued=False, stack=name, kind=kind.value, reason=_NOT_QUEUED)
    return QueueAnswer(queued=True, stack=name, kind=kind.value, run_id=run.id, status=run.status.value)


def _queue(
    queue_run: Callable[[str, RunKind, str], Run | None], name: str, kind: RunKind, token: ApiToken
) -> Run | None:
    try:
        run = queue_run(name, kind, token.actor)
    except TfopsError as exc:
        # Logged here in full; the caller gets no internals, only that it did not happen.
        log.error("API: %s could not queue a %s run of %r: %s", token.actor, kind.value, name, exc)
        raise HTTPException(503, detail="the run could not be queued; see the daemon's log") from None
    if run is None:
        log.info("API: %s asked for a %s run of %r; none queued", token.actor, kind.value, name)
    else:
        log.info("API: %s queued %s run %d of %r", token.actor, kind.value, run.id, name)
    return run


def _audit(store: Store, token: ApiToken, kind: RunKind, name: str, run: Run | None) -> None:
    store.audit(
        token.actor,
        token.name,
        f"queue_{kind.value}",
        run.id if run else None,
        {"stack": name, "queued": run is not None, "source": "api"},
    )


# --------------------------------------------------------------------------- the router

_QUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": QueueAnswer, "description": "not queued (see reason)"},
    403: {"description": "the token has read scope only"},
    404: {"description": "no configured stack of that name"},
    503: {"description": "the daemon could not queue the run now"},
}


def api_router(
    *,
    store: Store,
    stacks: Callable[[], Mapping[str, Stack]],
    queue_run: Callable[[str, RunKind, str], Run | None],
    tokens: Sequence[ApiToken],
    next_check: Callable[[str], datetime | None] = lambda name: None,
    scrub: Scrub = unchanged,
) -> APIRouter:
    """The /api routes; ValueError without tokens (the daemon mounts the API only when it has some).

    `stacks()` gives the configured stacks now; `queue_run(stack, kind, actor)` queues a run and
    returns it, or None when none was queued; `next_check(stack)` is the scheduler's next drift check.
    `scrub(text)` rewrites the free texts of runs (error, event messages, trigger note) before they
    leave, e.g. to hide the data directory in the commands an error quotes.
    """
    context = ApiContext(store, stacks, queue_run, TokenTable(tokens), next_check, scrub)
    router = APIRouter(
        prefix="/api",
        tags=["api"],
        # The context first: every dependency after it, authentication included, reads it.
        dependencies=[Depends(context.attach), Depends(authenticated)],
        responses={401: {"description": "no bearer token, or not a configured one"}},
    )
    _add_routes(router)
    return router


def _add_routes(router: APIRouter) -> None:
    router.add_api_route(
        "/stacks",
        list_stacks,
        methods=["GET"],
        operation_id="list_stacks",
        summary="Every stack: policy, heads, drift, last run, next drift check",
    )
    router.add_api_route(
        "/runs", list_runs, methods=["GET"], operation_id="list_runs", summary="Runs, newest first"
    )
    router.add_api_route(
        "/runs/{run_id}",
        get_run,
        methods=["GET"],
        operation_id="get_run",
        summary="One run with its redacted plan summary, events and decisions",
        responses={404: {"description": "no such run"}},
    )
    for action, handler, summary in (
        ("plan", queue_plan, "Queue a plan of the stack at the branch head"),
        ("drift", queue_drift, "Queue a drift check of the stack"),
    ):
        router.add_api_route(
            f"/stacks/{{name}}/{action}",
            handler,
            methods=["POST"],
            summary=summary,
            status_code=202,
            responses=_QUEUE_RESPONSES,
            name=f"queue_{action}",
            operation_id=f"queue_{action}",
        )
