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
from pydantic import BaseModel, Field

from tfops.errors import TfopsError
from tfops.models import Run, RunKind, Stack, StackState
from tfops.store.store import Decision, RunEvent, Store
from tfops.terraform.plan import summary_from_dict

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
Scrub = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


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


# --------------------------------------------------------------------------- response models


class Policy(BaseModel):
    on_merge: str
    on_drift: str
    drift_interval: float = Field(description="seconds between drift checks; 0 means none")
    approvals_required: int


class LastRun(BaseModel):
    id: int
    kind: str
    status: str
    finished_at: datetime | None


class StackView(BaseModel):
    name: str
    path: str
    configured: bool = Field(description="false for a stack that left the configuration (history only)")
    policy: Policy | None = Field(description="null when the stack is no longer configured")
    head_sha: str | None
    applied_sha: str | None
    drift: str
    drift_checked_at: datetime | None
    last_run: LastRun | None
    next_check: datetime | None = Field(description="when the daemon's scheduler next checks for drift")


class TriggerView(BaseModel):
    source: str
    actor: str
    note: str


class Counts(BaseModel):
    create: int
    update: int
    delete: int
    replace: int


class RunView(BaseModel):
    id: int
    stack: str
    kind: str
    status: str
    commit_sha: str | None
    plan_sha256: str | None
    trigger: TriggerView
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    decided_by: str | None
    counts: Counts | None = Field(description="planned changes by action; null before a plan")


class EventView(BaseModel):
    at: datetime
    from_status: str | None
    to_status: str
    message: str


class DecisionView(BaseModel):
    decision: str
    actor_id: str
    actor_name: str | None
    source: str
    outcome: str
    reason: str | None
    at: datetime


class RunDetail(RunView):
    exit_code: int | None
    error: str | None = Field(description="what went wrong, redacted")
    summary: dict[str, Any] | None = Field(description="the redacted plan summary as stored")
    events: list[EventView]
    decisions: list[DecisionView]


class QueueAnswer(BaseModel):
    queued: bool
    stack: str
    kind: str
    run_id: int | None = None
    status: str | None = None
    reason: str | None = Field(default=None, description="why no run was queued")


# --------------------------------------------------------------------------- views (pure)


def stack_view(
    name: str,
    state: StackState | None,
    stack: Stack | None,
    last: Run | None,
    next_check: datetime | None,
) -> StackView:
    """One stack as the API shows it, from what the store remembers and what is configured."""
    policy = None
    if stack is not None:
        policy = Policy(
            on_merge=stack.on_merge.value,
            on_drift=stack.on_drift.value,
            drift_interval=stack.drift_interval,
            approvals_required=stack.approvals_required,
        )
    return StackView(
        name=name,
        path=stack.path if stack is not None else state.path if state is not None else "",
        configured=stack is not None,
        policy=policy,
        head_sha=state.head_sha if state else None,
        applied_sha=state.applied_sha if state else None,
        drift=state.drift.value if state else "unknown",
        drift_checked_at=state.drift_checked_at if state else None,
        last_run=LastRun(
            id=last.id, kind=last.kind.value, status=last.status.value, finished_at=last.finished_at
        )
        if last
        else None,
        next_check=next_check,
    )


def run_view(run: Run, scrub: Scrub = _unchanged) -> RunView:
    return RunView(**_run_fields(run, scrub))


def run_detail(
    run: Run, events: Sequence[RunEvent], decisions: Sequence[Decision], scrub: Scrub = _unchanged
) -> RunDetail:
    """One run for `GET /api/runs/{id}`; `scrub` is applied to every free text the run recorded."""
    return RunDetail(
        **_run_fields(run, scrub),
        exit_code=run.exit_code,
        error=scrub(run.error) if run.error is not None else None,
        summary=run.summary,
        events=[
            EventView(
                at=event.at,
                from_status=event.from_status.value if event.from_status else None,
                to_status=event.to_status.value,
                message=scrub(event.message),
            )
            for event in events
        ],
        decisions=[
            DecisionView(
                decision=decision.decision.value,
                actor_id=decision.actor_id,
                actor_name=decision.actor_name,
                source=decision.source.value,
                outcome=decision.outcome.value,
                reason=decision.reason,
                at=decision.at,
            )
            for decision in decisions
        ],
    )


def _run_fields(run: Run, scrub: Scrub) -> dict[str, Any]:
    # Deliberately not log_path: a host detail (see the module docstring).
    return {
        "id": run.id,
        "stack": run.stack,
        "kind": run.kind.value,
        "status": run.status.value,
        "commit_sha": run.commit_sha,
        "plan_sha256": run.plan_sha256,
        "trigger": TriggerView(
            source=run.trigger.source.value, actor=run.trigger.actor, note=scrub(run.trigger.note)
        ),
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "decided_by": run.decided_by,
        "counts": Counts(**summary_from_dict(run.summary).counts) if run.summary is not None else None,
    }


# --------------------------------------------------------------------------- authentication


class _TokenTable:
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
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent.
        wanted = _digest(presented.encode("latin-1", "replace"))
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


# --------------------------------------------------------------------------- the router


def api_router(
    *,
    store: Store,
    stacks: Callable[[], Mapping[str, Stack]],
    queue_run: Callable[[str, RunKind, str], Run | None],
    tokens: Sequence[ApiToken],
    next_check: Callable[[str], datetime | None] = lambda name: None,
    scrub: Scrub = _unchanged,
) -> APIRouter:
    """The /api routes; ValueError without tokens (the daemon mounts the API only when it has some).

    `stacks()` gives the configured stacks now; `queue_run(stack, kind, actor)` queues a run and
    returns it, or None when none was queued; `next_check(stack)` is the scheduler's next drift check.
    `scrub(text)` rewrites the free texts of runs (error, event messages, trigger note) before they
    leave, e.g. to hide the data directory in the commands an error quotes.
    """
    table = _TokenTable(tokens)
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="bearer",
        description="an API token from the tfops configuration; write endpoints need one with write scope",
    )

    def authenticated(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
    ) -> ApiToken:
        if credentials is None:
            raise _refuse(request, 401, "no bearer token", "a bearer token is required", _REALM)
        token = table.find(credentials.credentials)
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

    router = APIRouter(
        prefix="/api",
        tags=["api"],
        dependencies=[Depends(authenticated)],
        responses={401: {"description": "no bearer token, or not a configured one"}},
    )

    @router.get(
        "/stacks",
        operation_id="list_stacks",
        summary="Every stack: policy, heads, drift, last run, next drift check",
    )
    def list_stacks() -> list[StackView]:
        configured = stacks()
        states = {state.name: state for state in store.list_stacks()}
        return [
            stack_view(name, states.get(name), configured.get(name), store.last_run(name), next_check(name))
            for name in sorted(configured.keys() | states.keys())
        ]

    @router.get("/runs", operation_id="list_runs", summary="Runs, newest first")
    def list_runs(
        stack: Annotated[str | None, Query(max_length=200, description="only this stack's runs")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = DEFAULT_RUNS,
    ) -> list[RunView]:
        return [run_view(run, scrub) for run in store.list_runs(stack=stack, limit=limit)]

    @router.get(
        "/runs/{run_id}",
        operation_id="get_run",
        summary="One run with its redacted plan summary, events and decisions",
        responses={404: {"description": "no such run"}},
    )
    def get_run(run_id: Annotated[int, Path(ge=1, le=MAX_RUN_ID)]) -> RunDetail:
        run = store.get_run(run_id)
        if run is None:
            raise HTTPException(404, detail=f"no run {run_id}")
        return run_detail(run, store.events(run_id), store.decisions(run_id), scrub)

    def add_queue_route(action: str, kind: RunKind, summary: str) -> None:
        @router.post(
            f"/stacks/{{name}}/{action}",
            summary=summary,
            status_code=202,
            responses={
                200: {"model": QueueAnswer, "description": "not queued (see reason)"},
                403: {"description": "the token has read scope only"},
                404: {"description": "no configured stack of that name"},
                503: {"description": "the daemon could not queue the run now"},
            },
            name=f"queue_{action}",
            operation_id=f"queue_{action}",
        )
        def queue(
            name: Annotated[str, Path(max_length=200)],
            response: Response,
            token: Annotated[ApiToken, Depends(may_write)],
        ) -> QueueAnswer:
            if name not in stacks():
                raise HTTPException(404, detail=f"no configured stack named {name!r}")
            run = _queue(queue_run, name, kind, token)
            _audit(store, token, kind, name, run)
            if run is None:
                response.status_code = 200
                return QueueAnswer(queued=False, stack=name, kind=kind.value, reason=_NOT_QUEUED)
            return QueueAnswer(
                queued=True, stack=name, kind=kind.value, run_id=run.id, status=run.status.value
            )

    add_queue_route("plan", RunKind.PLAN, "Queue a plan of the stack at the branch head")
    add_queue_route("drift", RunKind.DRIFT, "Queue a drift check of the stack")
    return router


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
