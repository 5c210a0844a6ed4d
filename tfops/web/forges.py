"""What each Git host sends, and what tfops makes of it: one `WebhookRoute` per host in `ROUTES`.

A route says how to authenticate a delivery (the secret against the raw body or a header), how to
read its event and delivery id, how to parse its payload, and what the event means for the
configured repository and branch (`Verdict`). Everything here is pure: tfops/web/webhooks.py
runs these steps in order for each request.

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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from tfops.web.forms import single_field

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_DELIVERY_ID = 200  # hosts send UUIDs (36 characters); anything far longer is not a delivery id
DELIVERY_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_DELIVERY_ID}}}")
_LOGGED_TEXT = 100


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
    keys = ("full_name", "clone_url", "html_url", "ssh_url", "git_url")
    names = [_dig(payload, "repository", key) for key in keys]
    judges = {"push": _judge_push, "pull_request": _judge_pull_request}
    return _judge_event(event, judges, payload, names, repo)


def judge_gitlab(event: str, payload: object, repo: RepoMatch) -> Verdict:
    keys = ("path_with_namespace", "git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")
    names = [_dig(payload, "project", key) for key in keys]
    judges = {"Push Hook": _judge_push, "Merge Request Hook": _judge_merge_request}
    return _judge_event(event, judges, payload, names, repo)


BranchJudge = Callable[[object, list[object], RepoMatch], Verdict]  # (payload, repository names, repo)


def _judge_event(
    event: str, judges: Mapping[str, BranchJudge], payload: object, names: list[object], repo: RepoMatch
) -> Verdict:
    """The judge a host has for `event` (each host names its events its own way); an event without
    one does not change a branch. `names` are the repository's names in the payload, first shown first."""
    judge = judges.get(event)
    if judge is None:
        return _ignore(f"{shown(event)} events do not change a branch")
    return judge(payload, names, repo)


def judge_generic(event: str, payload: object, repo: RepoMatch) -> Verdict:
    return Verdict("fetch")


def _judge_push(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    ref = _dig(payload, "ref")
    if ref != repo.ref:
        return _ignore(f"push to {shown(ref)}, not {repo.ref}")
    return Verdict("fetch", sha=_sha(_dig(payload, "after")), ref=repo.ref)


def _judge_pull_request(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    action = _dig(payload, "action")
    if action != "closed":
        return _ignore(f"pull request {shown(action)}: only a merge changes {repo.branch}")
    if _dig(payload, "pull_request", "merged") is not True:
        return _ignore("pull request closed without merging")
    base = _dig(payload, "pull_request", "base", "ref")
    if base != repo.branch:
        return _ignore(f"pull request merged into {shown(base)}, not {repo.branch}")
    return Verdict("fetch", sha=_sha(_dig(payload, "pull_request", "merge_commit_sha")), ref=repo.ref)


def _judge_merge_request(payload: object, names: list[object], repo: RepoMatch) -> Verdict:
    if not repo.matches(names):
        return _other_repository(names)
    state, action = _dig(payload, "object_attributes", "state"), _dig(payload, "object_attributes", "action")
    if state != "merged":
        return _ignore(f"merge request {shown(action or state)}: only a merge changes {repo.branch}")
    if action not in (None, "merge"):  # e.g. a label added to a merged request: the branch did not move
        return _ignore(f"merge request already merged; {shown(action)} changes nothing")
    target = _dig(payload, "object_attributes", "target_branch")
    if target != repo.branch:
        return _ignore(f"merge request merged into {shown(target)}, not {repo.branch}")
    return Verdict("fetch", sha=_sha(_dig(payload, "object_attributes", "merge_commit_sha")), ref=repo.ref)


def _other_repository(names: list[object]) -> Verdict:
    named = next((name for name in names if isinstance(name, str) and name), None)
    if named is None:
        return _ignore("the payload names no repository")
    return _ignore(f"repository {shown(named)} is not the configured one")


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


def shown(value: object) -> str:
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
