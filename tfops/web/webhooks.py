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

What each host sends (checked against their documentation and delivery code):

    GitHub   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>; X-GitHub-Event;
             X-GitHub-Delivery (a GUID kept on redelivery). Body JSON, or a form with one
             `payload` field when the hook's content type is x-www-form-urlencoded (the
             signature then covers the form body as sent).
    GitLab   X-Gitlab-Token: the secret itself; X-Gitlab-Event ("Push Hook", "Merge Request
             Hook"); Idempotency-Key (GitLab 17.4+, kept on retries); X-Gitlab-Event-UUID (one
             per event); X-Gitlab-Webhook-UUID is new on every attempt, useless for deduplication.
    Gitea    X-Gitea-Signature (Forgejo also X-Forgejo-Signature): hex HMAC-SHA256 of the JSON
             payload; X-Gitea-Event / X-Forgejo-Event; X-Gitea-Delivery / X-Forgejo-Delivery.
             For a form-encoded hook Gitea signs the JSON inside the `payload` field, not the
             body it sends, so only the JSON content type can be verified here.
    generic  Authorization: Bearer <token>; an empty or JSON body; optional Idempotency-Key.

Logs name the source, event, delivery id, result and reason (header values trimmed to printable
ASCII); never a secret, signature, token or body. Handlers do no I/O besides the sink call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tfops.triggers import FetchHint
from tfops.web.forms import single_field

log = logging.getLogger(__name__)

SOURCES = ("github", "gitlab", "gitea", "generic")
RESULTS = ("accepted", "duplicate", "ignored", "ping", "unauthorized", "bad_request", "unavailable")
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_DELIVERY_ID = 200  # hosts send UUIDs (36 characters); anything far longer is not a delivery id
DELIVERY_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_DELIVERY_ID}}}")
_LOGGED_TEXT = 100


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


@dataclass(frozen=True)
class RepoMatch:
    """The repository and branch whose deliveries count; names compare case-insensitively.

    `names` holds full names ("acme/infra") and clone or web URLs; a trailing ".git" or "/" does
    not matter. A delivery counts when any identity it carries matches any name.
    """

    names: frozenset[str]
    branch: str
    _identities: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        identities = frozenset(repo_identity(name) for name in self.names if isinstance(name, str))
        if not identities or "" in identities:
            raise ValueError("the repository to match webhooks against needs at least one non-empty name")
        if not self.branch.strip() or self.branch.startswith("refs/"):
            raise ValueError(f"bad branch {self.branch!r}: give the branch name, such as main")
        object.__setattr__(self, "_identities", identities)

    @classmethod
    def from_remote(cls, url: str, branch: str, *names: str) -> RepoMatch:
        """The remote URL, its "owner/name" path when it has one, and any other names given."""
        path = repo_path(url)
        return cls(frozenset({url, *names, *([path] if path else [])}), branch)

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def matches(self, candidates: Iterable[object]) -> bool:
        return any(isinstance(c, str) and repo_identity(c) in self._identities for c in candidates)


def repo_identity(name: str) -> str:
    """The form names are compared in: lower case, no surrounding blanks, no trailing "/" or ".git"."""
    return name.strip().lower().rstrip("/").removesuffix(".git").rstrip("/")


def repo_path(url: str) -> str | None:
    """ "owner/name" (or "group/sub/name") of an https, ssh or scp-like Git URL; None for local paths."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        path = parts.path if parts.scheme != "file" and parts.hostname else ""
    elif ":" in text and not text.startswith("/"):  # scp-like: git@github.com:acme/infra.git
        path = text.split(":", 1)[1]
    else:
        return None
    path = path.strip("/").removesuffix(".git").strip("/")
    return path if "/" in path else None


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
            endpoint = _endpoint(route, secret.encode(), repo, sink, recent, on_delivery)
            router.add_api_route(
                f"/webhooks/{route.source}",
                endpoint,
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


# --------------------------------------------------------------------------- what a route checks


class BadDelivery(ValueError):
    """An authentic request that is not a well-formed delivery (400); the message says why."""


@dataclass(frozen=True)
class Verdict:
    """What a well-formed delivery asks for."""

    action: Literal["fetch", "ignore", "ping"]
    reason: str = ""
    sha: str | None = None
    ref: str | None = None


Headers = Mapping[str, str]  # looked up by lower-case name (Starlette's headers are case-insensitive)


@dataclass(frozen=True)
class WebhookRoute:
    source: str
    summary: str
    authenticate: Callable[[bytes, bytes, Headers], str | None]  # (secret, body, headers) → problem
    event: Callable[[Headers], str]  # BadDelivery when missing
    delivery_id: Callable[[Headers], str | None]
    payload: Callable[[str, bytes], object]  # (content type, body) → payload; BadDelivery
    judge: Callable[[str, object, RepoMatch], Verdict]  # pure; never raises


def github_signature_problem(secret: bytes, body: bytes, headers: Headers) -> str | None:
    given = headers.get("x-hub-signature-256")
    if not given:
        sha1_only = " (only the SHA-1 X-Hub-Signature was sent)" if headers.get("x-hub-signature") else ""
        return f"missing X-Hub-Signature-256 header{sha1_only}"
    expected = b"sha256=" + _hmac_hex(secret, body)
    return None if hmac.compare_digest(_raw(given).lower(), expected) else "signature does not match the body"


def gitea_signature_problem(secret: bytes, body: bytes, headers: Headers) -> str | None:
    given = [value for name in ("x-gitea-signature", "x-forgejo-signature") if (value := headers.get(name))]
    if not given:
        return "missing X-Gitea-Signature (or X-Forgejo-Signature) header"
    expected = _hmac_hex(secret, body)
    if any(hmac.compare_digest(_raw(value).lower().removeprefix(b"sha256="), expected) for value in given):
        return None
    if _media_type(headers.get("content-type", "")) == FORM_TYPE:
        return (
            "signature does not match the body; Gitea signs the JSON inside a form-encoded body, "
            "not the body itself: set the webhook's POST content type to application/json"
        )
    return "signature does not match the body"


def gitlab_token_problem(secret: bytes, body: bytes, headers: Headers) -> str | None:
    given = headers.get("x-gitlab-token")
    if not given:
        return "missing X-Gitlab-Token header"
    return None if hmac.compare_digest(_raw(given), secret) else "X-Gitlab-Token does not match the secret"


def bearer_token_problem(secret: bytes, body: bytes, headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing Authorization: Bearer header"
    return None if hmac.compare_digest(_raw(token.strip()), secret) else "bearer token does not match"


def _hmac_hex(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


def _raw(header_value: str) -> bytes:
    # Starlette decodes header bytes as latin-1, so this gives back exactly the bytes that were sent
    # (and compare_digest refuses non-ASCII str).
    return header_value.encode("latin-1")


def _required_header(*names: str) -> Callable[[Headers], str]:
    def read(headers: Headers) -> str:
        for name in names:
            if value := headers.get(name, "").strip():
                return value
        raise BadDelivery(f"missing {' or '.join(_title(name) for name in names)} header")

    return read


def _delivery_header(*names: str) -> Callable[[Headers], str | None]:
    """The first delivery id or idempotency key present; BadDelivery unless it is a plain token.

    Hosts sign the body, not the headers: the id is whatever the sender wrote, and it reaches
    logs, the duplicate memory and trigger notes, so only UUID-like characters are accepted.
    """

    def read(headers: Headers) -> str | None:
        for name in names:
            if value := headers.get(name, "").strip():
                if len(value) > MAX_DELIVERY_ID:
                    raise BadDelivery(f"{_title(name)} is longer than {MAX_DELIVERY_ID} characters")
                if not DELIVERY_ID.fullmatch(value):
                    raise BadDelivery(
                        f"{_title(name)} may only hold letters, digits and the characters . _ : -"
                    )
                return value
        return None

    return read


def _title(header: str) -> str:
    known = {"github": "GitHub", "gitlab": "Gitlab", "uuid": "UUID", "id": "ID"}
    return "-".join(known.get(part, part.capitalize()) for part in header.split("-"))


def json_object(content_type: str, body: bytes, *, form_allowed: bool = False) -> dict[str, object]:
    """The JSON object a delivery carries, as JSON or (if allowed) as the form field `payload`."""
    media_type = _media_type(content_type)
    if media_type == FORM_TYPE and form_allowed:
        document: str | bytes = _form_payload(body)
    elif media_type == JSON_TYPE:
        document = body
    else:
        allowed = f"{JSON_TYPE} or {FORM_TYPE}" if form_allowed else JSON_TYPE
        raise BadDelivery(f"Content-Type must be {allowed}")
    value = _parse_json(document)
    if not isinstance(value, dict):
        raise BadDelivery("body is not a JSON object")
    return value


def generic_payload(content_type: str, body: bytes) -> object:
    """Nothing, or any JSON value: the generic route only needs to know someone asked."""
    if not body.strip():
        return None
    if _media_type(content_type) != JSON_TYPE:
        raise BadDelivery(f"a non-empty body needs Content-Type {JSON_TYPE}")
    return _parse_json(body)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _form_payload(body: bytes) -> str:
    try:
        return single_field(body, "payload")
    except ValueError as exc:
        raise BadDelivery(str(exc)) from None


def _parse_json(document: str | bytes) -> object:
    try:
        return json.loads(document)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise BadDelivery("body is not valid JSON") from None


# --------------------------------------------------------------------------- what an event means


def judge_github(event: str, payload: object, repo: RepoMatch) -> Verdict:
    if event == "ping":
        return Verdict("ping")
    return judge_gitea(event, payload, repo)  # the same payload shapes for push and pull_request


def judge_gitea(event: str, payload: object, repo: RepoMatch) -> Verdict:
    names = [_dig(payload, "repository", key) for key in ("full_name", "clone_url", "html_url", "ssh_url")]
    names.append(_dig(payload, "repository", "git_url"))
    if event == "push":
        return _judge_push(payload, names, repo)
    if event == "pull_request":
        return _judge_pull_request(payload, names, repo)
    return _ignore(f"{_shown(event)} events do not change a branch")


def judge_gitlab(event: str, payload: object, repo: RepoMatch) -> Verdict:
    names = [
        _dig(payload, "project", key)
        for key in ("path_with_namespace", "git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")
    ]
    if event == "Push Hook":
        return _judge_push(payload, names, repo)
    if event == "Merge Request Hook":
        return _judge_merge_request(payload, names, repo)
    return _ignore(f"{_shown(event)} events do not change a branch")


def judge_generic(event: str, payload: object, repo: RepoMatch) -> Verdict:
    return Verdict("fetch")


def _judge_push(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    ref = _dig(payload, "ref")
    if ref != repo.ref:
        return _ignore(f"push to {_shown(ref)}, not {repo.ref}")
    return Verdict("fetch", sha=_sha(_dig(payload, "after")), ref=repo.ref)


def _judge_pull_request(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    action = _dig(payload, "action")
    if action != "closed":
        return _ignore(f"pull request {_shown(action)}: only a merge changes {repo.branch}")
    if _dig(payload, "pull_request", "merged") is not True:
        return _ignore("pull request closed without merging")
    base = _dig(payload, "pull_request", "base", "ref")
    if base != repo.branch:
        return _ignore(f"pull request merged into {_shown(base)}, not {repo.branch}")
    return Verdict("fetch", sha=_sha(_dig(payload, "pull_request", "merge_commit_sha")), ref=repo.ref)


def _judge_merge_request(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    state, action = _dig(payload, "object_attributes", "state"), _dig(payload, "object_attributes", "action")
    if state != "merged":
        return _ignore(f"merge request {_shown(action or state)}: only a merge changes {repo.branch}")
    if action not in (None, "merge"):  # e.g. a label added to a merged request: the branch did not move
        return _ignore(f"merge request already merged; {_shown(action)} changes nothing")
    target = _dig(payload, "object_attributes", "target_branch")
    if target != repo.branch:
        return _ignore(f"merge request merged into {_shown(target)}, not {repo.branch}")
    return Verdict("fetch", sha=_sha(_dig(payload, "object_attributes", "merge_commit_sha")), ref=repo.ref)


def _other_repository(names: list[object]) -> Verdict:
    named = next((name for name in names if isinstance(name, str) and name), None)
    if named is None:
        return _ignore("the payload names no repository")
    return _ignore(f"repository {_shown(named)} is not the configured one")


def _ignore(reason: str) -> Verdict:
    return Verdict("ignore", reason=reason)


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _sha(value: object) -> str | None:
    """A commit SHA (hex, 7 to 64 characters) as given, else None: a correlation id, not a fact."""
    if isinstance(value, str) and 7 <= len(value) <= 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def _shown(value: object) -> str:
    """A value from a request, safe to log and echo: printable ASCII, short, quoted."""
    if not isinstance(value, str):
        return "(none)" if value is None else f"({type(value).__name__})"
    return repr(_printable(value))


def _printable(text: str) -> str:
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text[:_LOGGED_TEXT])
    return cleaned + ("…" if len(text) > _LOGGED_TEXT else "")


ROUTES = (
    WebhookRoute(
        source="github",
        summary="GitHub webhook: push, merged pull_request, ping",
        authenticate=github_signature_problem,
        event=_required_header("x-github-event"),
        delivery_id=_delivery_header("x-github-delivery"),
        payload=lambda content_type, body: json_object(content_type, body, form_allowed=True),
        judge=judge_github,
    ),
    WebhookRoute(
        source="gitlab",
        summary="GitLab webhook: Push Hook, merged Merge Request Hook",
        authenticate=gitlab_token_problem,
        event=_required_header("x-gitlab-event"),
        delivery_id=_delivery_header("idempotency-key", "x-gitlab-event-uuid"),
        payload=json_object,
        judge=judge_gitlab,
    ),
    WebhookRoute(
        source="gitea",
        summary="Gitea or Forgejo webhook: push, merged pull_request",
        authenticate=gitea_signature_problem,
        event=_required_header("x-gitea-event", "x-forgejo-event"),
        delivery_id=_delivery_header("x-gitea-delivery", "x-forgejo-delivery"),
        payload=json_object,
        judge=judge_gitea,
    ),
    WebhookRoute(
        source="generic",
        summary="Fetch now: any caller with the bearer token",
        authenticate=bearer_token_problem,
        event=lambda headers: "generic",
        delivery_id=_delivery_header("idempotency-key"),
        payload=generic_payload,
        judge=judge_generic,
    ),
)


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


def _endpoint(
    route: WebhookRoute,
    secret: bytes,
    repo: RepoMatch,
    sink: FetchRequests,
    recent: RecentDeliveries,
    on_delivery: Callable[[str, str], None],
) -> Callable[[Request], object]:
    source = route.source

    def finish(result: str, status: int, content: dict[str, str], **log_fields: str | None) -> JSONResponse:
        _log_delivery(source, result, **log_fields)
        try:
            on_delivery(source, result)
        except Exception:  # the daemon's counter failing must not change the answer
            log.exception("on_delivery callback failed for a %s webhook", source)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 and source == "generic" else None
        return JSONResponse(content, status_code=status, headers=headers)

    # Async with no await between the duplicate check and `remember`: deliveries of one id that
    # arrive together are still handled one after the other on the server's event loop.
    async def receive_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        headers = request.headers
        client = request.client.host if request.client else "unknown client"
        problem = route.authenticate(secret, body, headers)
        if problem is not None:
            detail = _UNAUTHORIZED[source]
            return finish("unauthorized", 401, {"detail": detail}, client=client, reason=problem)
        try:
            event = route.event(headers)
            delivery = route.delivery_id(headers)
            payload = route.payload(headers.get("content-type", ""), body)
        except BadDelivery as exc:
            return finish("bad_request", 400, {"detail": str(exc)}, client=client, reason=str(exc))
        verdict = route.judge(event, payload, repo)
        where = {"event": event, "delivery": delivery}
        if verdict.action == "ping":
            return finish("ping", 200, {"status": "pong"}, **where)
        if verdict.action == "ignore":
            return finish(
                "ignored",
                202,
                {"status": "ignored", "reason": verdict.reason},
                **where,
                reason=verdict.reason,
            )
        key = (source, delivery) if delivery is not None else None
        if key is not None and key in recent:
            return finish("duplicate", 202, {"status": "duplicate"}, **where)
        hint = FetchHint(source, event, delivery, verdict.sha, verdict.ref)
        try:
            sink.request_fetch(hint)
        except Exception:
            log.exception("could not request a fetch for a %s webhook; the host may retry it", source)
            return finish("unavailable", 503, {"detail": "cannot take the delivery now; retry"}, **where)
        if key is not None:
            recent.remember(key)
        return finish("accepted", 202, {"status": "accepted"}, **where, sha=verdict.sha)

    receive_webhook.__name__ = f"webhook_{source}"
    return receive_webhook


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
        parts.append(f"event {_shown(event)}")
    if delivery is not None:
        parts.append(f"delivery {_shown(delivery)}")
    if sha is not None:
        parts.append(f"sha {sha}")
    message = f"{', '.join(parts)}: {result}" + (f" ({reason})" if reason else "")
    level = logging.WARNING if result in ("unauthorized", "bad_request", "unavailable") else logging.INFO
    log.log(level, "%s", message)
