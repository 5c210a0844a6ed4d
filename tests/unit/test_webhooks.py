"""Webhook routes over real HTTP to uvicorn on a loopback port, with the hosts' sample payloads.

Signatures are computed here with hmac, the way each host documents them. The sink only collects
the hints it is given: a test that expects nothing to happen asserts that the list stayed empty.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.webhooks import (
    FetchHint,
    RecentDeliveries,
    RepoMatch,
    WebhookSecrets,
    repo_path,
    webhook_router,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRETS = WebhookSecrets(
    github="canary-github-secret-51c2",
    gitlab="canary-gitlab-token-9e07",
    gitea="canary-gitea-secret-a4d1",
    generic="canary-bearer-token-77f0",
)
REPO = RepoMatch(frozenset({"acme/infra"}), "main")
MERGE_SHA = "9a1f3c7e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f13"
CAP = 64 * 1024
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class CollectingSink:
    hints: list[FetchHint] = field(default_factory=list)
    refusal: Exception | None = None

    def request_fetch(self, hint: FetchHint) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.hints.append(hint)


@dataclass
class Served:
    server: WebServer
    sink: CollectingSink
    deliveries: list[tuple[str, str]]
    client: httpx.Client


@pytest.fixture(scope="module")
def served_module() -> Iterator[Served]:
    sink, deliveries = CollectingSink(), []
    router = webhook_router(
        SECRETS, REPO, sink, on_delivery=lambda source, result: deliveries.append((source, result))
    )
    with (
        WebServer(create_app([router], max_body=CAP), HttpOptions(port=0)) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as client,
    ):
        yield Served(server, sink, deliveries, client)


@pytest.fixture
def served(served_module: Served, caplog: pytest.LogCaptureFixture) -> Served:
    served_module.sink.hints.clear()
    served_module.sink.refusal = None
    served_module.deliveries.clear()
    caplog.set_level(logging.INFO, logger="tfops.web.webhooks")
    return served_module


def payload(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def body_of(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_delivery() -> str:
    return str(uuid.uuid4())


def github_headers(
    body: bytes,
    event: str,
    *,
    delivery: str | None = None,
    content_type: str = JSON,
    secret: str = SECRETS.github,
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/7a4b1c2",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or new_delivery(),
        "X-GitHub-Hook-ID": "478129563",
        "X-Hub-Signature-256": "sha256=" + hmac_hex(secret, body),
    }


def gitlab_headers(
    event: str,
    *,
    token: str = SECRETS.gitlab,
    idempotency_key: str | None = None,
    event_uuid: str | None = None,
) -> dict[str, str]:
    headers = {
        "Content-Type": JSON,
        "User-Agent": "GitLab/17.6.1",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Instance": "https://gitlab.acme.example",
        "X-Gitlab-Webhook-UUID": new_delivery(),  # new on every attempt: must not matter
        "X-Gitlab-Event-UUID": event_uuid or new_delivery(),
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def gitea_headers(body: bytes, event: str, *, delivery: str | None = None) -> dict[str, str]:
    delivery, signature = delivery or new_delivery(), hmac_hex(SECRETS.gitea, body)
    return {
        "Content-Type": JSON,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event,
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Signature": signature,
        "X-Gogs-Event": event,
        "X-Gogs-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + signature,
    }


def forgejo_headers(body: bytes, event: str, *, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": JSON,
        "X-Forgejo-Event": event,
        "X-Forgejo-Delivery": delivery,
        "X-Forgejo-Signature": hmac_hex(SECRETS.gitea, body),
    }


def bearer(token: str = SECRETS.generic) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(served: Served, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return served.client.post(f"/webhooks/{source}", content=body, headers=headers)


def post_github(served: Served, name_or_payload: str | dict, event: str, **options: object) -> httpx.Response:
    if isinstance(name_or_payload, str):
        body = body_of(name_or_payload)
    else:
        body = json.dumps(name_or_payload).encode()
    return post(served, "github", body, github_headers(body, event, **options))  # type: ignore[arg-type]


def assert_no_secret_in(text: str) -> None:
    for secret in (SECRETS.github, SECRETS.gitlab, SECRETS.gitea, SECRETS.generic):
        assert secret is not None and secret not in text


# --------------------------------------------------------------------------- GitHub


def test_signed_merged_pull_request_for_the_repo_is_accepted_with_the_merge_sha(served: Served) -> None:
    delivery = new_delivery()

    response = post_github(served, "github_pull_request_merged", "pull_request", delivery=delivery)

    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    assert served.sink.hints == [FetchHint("github", "pull_request", delivery, MERGE_SHA, "refs/heads/main")]
    assert served.deliveries == [("github", "accepted")]


def test_same_github_delivery_twice_requests_one_fetch(served: Served) -> None:
    delivery = new_delivery()

    first = post_github(served, "github_pull_request_merged", "pull_request", delivery=delivery)
    second = post_github(served, "github_pull_request_merged", "pull_request", delivery=delivery)

    assert first.json() == {"status": "accepted"}
    assert (second.status_code, second.json()) == (202, {"status": "duplicate"})
    assert [hint.delivery_id for hint in served.sink.hints] == [delivery]
    assert served.deliveries == [("github", "accepted"), ("github", "duplicate")]


def test_github_push_to_the_branch_is_accepted_with_the_after_sha(served: Served) -> None:
    delivery = new_delivery()

    response = post_github(served, "github_push", "push", delivery=delivery)

    assert response.json() == {"status": "accepted"}
    assert served.sink.hints == [FetchHint("github", "push", delivery, MERGE_SHA, "refs/heads/main")]


def test_github_form_encoded_delivery_is_verified_over_the_form_body(served: Served) -> None:
    body = urlencode({"payload": body_of("github_push").decode()}).encode()

    response = post(served, "github", body, github_headers(body, "push", content_type=FORM))

    assert response.json() == {"status": "accepted"}
    assert [hint.sha for hint in served.sink.hints] == [MERGE_SHA]


def test_github_ping_is_answered_pong_and_fetches_nothing(served: Served) -> None:
    response = post_github(served, "github_ping", "ping")

    assert (response.status_code, response.json()) == (200, {"status": "pong"})
    assert served.sink.hints == []
    assert served.deliveries == [("github", "ping")]


def test_forged_signature_is_refused_and_nothing_logged_but_the_reason(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    genuine = body_of("github_pull_request_merged")
    headers = github_headers(genuine, "pull_request")
    forged = genuine.replace(b"acme/infra", b"acme/canary-forged-body", 1)

    response = post(served, "github", forged, headers)

    assert (response.status_code, response.json()) == (401, {"detail": "invalid or missing signature"})
    assert served.sink.hints == []
    assert served.deliveries == [("github", "unauthorized")]
    assert "github webhook from 127.0.0.1: unauthorized (signature does not match the body)" in caplog.text
    assert "canary-forged-body" not in caplog.text
    assert headers["X-Hub-Signature-256"] not in caplog.text
    assert_no_secret_in(caplog.text + response.text)


def test_signature_made_with_another_secret_is_refused(served: Served) -> None:
    response = post_github(served, "github_push", "push", secret="someone-elses-secret")

    assert response.status_code == 401
    assert served.sink.hints == []


@pytest.mark.parametrize(
    "dropped, added",
    [
        (("X-Hub-Signature-256",), {}),
        (("X-Hub-Signature-256",), {"X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567"}),
        ((), {"X-Hub-Signature-256": "sha256="}),
        ((), {"X-Hub-Signature-256": "not-a-signature-at-all"}),
    ],
    ids=["missing", "only-sha1", "empty-digest", "garbage"],
)
def test_missing_or_unreadable_github_signature_is_refused(
    served: Served, dropped: tuple[str, ...], added: dict[str, str]
) -> None:
    body = body_of("github_push")
    headers = {k: v for k, v in github_headers(body, "push").items() if k not in dropped} | added

    response = post(served, "github", body, headers)

    assert response.status_code == 401
    assert served.sink.hints == []


def test_forged_deliveries_cannot_make_a_real_one_look_like_a_duplicate(served: Served) -> None:
    delivery, body = new_delivery(), body_of("github_push")
    forged = github_headers(body, "push", delivery=delivery, secret="guessed")

    refused = [post(served, "github", body, forged).status_code for _ in range(3)]
    genuine = post(served, "github", body, github_headers(body, "push", delivery=delivery))

    assert refused == [401, 401, 401]
    assert genuine.json() == {"status": "accepted"}
    assert [hint.delivery_id for hint in served.sink.hints] == [delivery]


def with_repository(document: dict, full_name: str) -> dict:
    repo = {
        **document["repository"],
        "full_name": full_name,
        "html_url": f"https://github.com/{full_name}",
        "clone_url": f"https://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "git_url": f"git://github.com/{full_name}.git",
    }
    return {**document, "repository": repo}


def merged_into(base: str) -> dict:
    document = payload("github_pull_request_merged")
    pull = document["pull_request"]
    return {**document, "pull_request": {**pull, "base": {**pull["base"], "ref": base}}}


@pytest.mark.parametrize(
    "document, event, reason",
    [
        (
            with_repository(payload("github_push"), "acme/website"),
            "push",
            "repository 'acme/website' is not the configured one",
        ),
        (
            {**payload("github_push"), "ref": "refs/heads/dev"},
            "push",
            "push to 'refs/heads/dev', not refs/heads/main",
        ),
        (
            {**payload("github_push"), "ref": "refs/tags/v1.2.0"},
            "push",
            "push to 'refs/tags/v1.2.0', not refs/heads/main",
        ),
        (
            payload("github_pull_request_closed_unmerged"),
            "pull_request",
            "pull request closed without merging",
        ),
        (
            {**payload("github_pull_request_merged"), "action": "opened"},
            "pull_request",
            "pull request 'opened': only a merge changes main",
        ),
        (merged_into("release"), "pull_request", "pull request merged into 'release', not main"),
        (payload("github_push"), "issues", "'issues' events do not change a branch"),
        ({"zen": "no repository here"}, "push", "the payload names no repository"),
    ],
    ids=[
        "other-repo",
        "other-branch",
        "tag",
        "closed-unmerged",
        "opened",
        "other-base",
        "other-event",
        "no-repo",
    ],
)
def test_deliveries_that_do_not_change_the_branch_are_ignored_with_the_reason(
    served: Served, caplog: pytest.LogCaptureFixture, document: dict, event: str, reason: str
) -> None:
    delivery = new_delivery()

    response = post_github(served, document, event, delivery=delivery)

    assert (response.status_code, response.json()) == (202, {"status": "ignored", "reason": reason})
    assert served.sink.hints == []
    assert served.deliveries == [("github", "ignored")]
    assert f"delivery '{delivery}'" in caplog.text and reason in caplog.text


def test_repository_is_recognised_by_its_clone_url_whatever_the_case_and_suffix(served: Served) -> None:
    sink = CollectingSink()
    by_url = RepoMatch(frozenset({"HTTPS://GitHub.com/Acme/Infra/"}), "main")
    router = webhook_router(WebhookSecrets(github=SECRETS.github), by_url, sink)
    body = body_of("github_push")

    with WebServer(create_app([router]), HttpOptions(port=0)) as server:
        response = httpx.post(
            f"{server.url}/webhooks/github", content=body, headers=github_headers(body, "push")
        )

    assert response.json() == {"status": "accepted"}
    assert len(sink.hints) == 1


@pytest.mark.parametrize(
    "body, headers_change, detail",
    [
        (b"{not json", {}, "body is not valid JSON"),
        (b"[" * 30_000 + b"]" * 30_000, {}, "body is not valid JSON"),
        (b'["a", "list"]', {}, "body is not a JSON object"),
        (b"\xff\xfe\x00garbage", {}, "body is not valid JSON"),
        (
            b'{"ref": "refs/heads/main"}',
            {"Content-Type": "text/plain"},
            f"Content-Type must be {JSON} or {FORM}",
        ),
        (b"payload=%7Bnot+json", {"Content-Type": FORM}, "body is not valid JSON"),
        (b"other=1", {"Content-Type": FORM}, "form must have exactly one `payload` field"),
        (b'{"ref": "refs/heads/main"}', {"X-GitHub-Event": ""}, "missing X-GitHub-Event header"),
        (b"{}", {"X-GitHub-Delivery": "d" * 300}, "X-GitHub-Delivery is longer than 200 characters"),
    ],
    ids=[
        "malformed",
        "nested-too-deep",
        "array",
        "binary",
        "wrong-type",
        "form-not-json",
        "form-no-payload",
        "no-event",
        "long-delivery-id",
    ],
)
def test_signed_but_malformed_deliveries_are_refused_400(
    served: Served, body: bytes, headers_change: dict[str, str], detail: str
) -> None:
    headers = github_headers(body, "push") | headers_change

    response = post(served, "github", body, headers)

    assert (response.status_code, response.json()) == (400, {"detail": detail})
    assert served.sink.hints == []
    assert served.deliveries == [("github", "bad_request")]


def signed_with_delivery(source: str, delivery_header: str, delivery: str | bytes) -> tuple[bytes, dict]:
    """A proper delivery from `source` for the repo, with `delivery_header` set to `delivery`."""
    if source == "github":
        body = body_of("github_push")
        headers = github_headers(body, "push")
    elif source == "gitlab":
        body, headers = body_of("gitlab_push"), gitlab_headers("Push Hook")
    elif source == "gitea":
        body = body_of("gitea_push")
        headers = gitea_headers(body, "push")
    else:
        body, headers = b"", bearer()
    return body, {**headers, delivery_header: delivery}


DELIVERY_ROUTES = [
    ("github", "X-GitHub-Delivery"),
    ("gitlab", "Idempotency-Key"),
    ("gitlab", "X-Gitlab-Event-UUID"),
    ("gitea", "X-Gitea-Delivery"),
    ("generic", "Idempotency-Key"),
]
DELIVERY_ID_RULE = "may only hold letters, digits and the characters . _ : -"


@pytest.mark.parametrize("source, delivery_header", DELIVERY_ROUTES)
@pytest.mark.parametrize(
    "delivery",
    ["<!channel>", "[bold red]forged[/]", "two words", "d\u00e9j\u00e0-vu".encode(), b"id\x1b[2J", "a/b"],
    ids=["slack-markup", "rich-markup", "space", "non-ascii", "escape", "slash"],
)
def test_a_signed_delivery_whose_id_is_not_a_plain_token_is_refused_400(
    served: Served, source: str, delivery_header: str, delivery: str | bytes
) -> None:
    body, headers = signed_with_delivery(source, delivery_header, delivery)

    response = post(served, source, body, headers)

    title = delivery_header.replace("Github", "GitHub")
    assert (response.status_code, response.json()) == (400, {"detail": f"{title} {DELIVERY_ID_RULE}"})
    assert served.sink.hints == []
    assert served.deliveries == [(source, "bad_request")]


def test_a_bad_delivery_id_without_valid_credentials_is_still_401(served: Served) -> None:
    body = body_of("github_push")
    headers = github_headers(body, "push", secret="not-the-secret") | {"X-GitHub-Delivery": "<!channel>"}

    response = post(served, "github", body, headers)

    assert response.status_code == 401
    assert served.deliveries == [("github", "unauthorized")]


@pytest.mark.parametrize("source, delivery_header", DELIVERY_ROUTES)
def test_delivery_ids_made_of_letters_digits_and_punctuation_are_accepted(
    served: Served, source: str, delivery_header: str
) -> None:
    delivery = f"{new_delivery()}:retry.1_A"
    body, headers = signed_with_delivery(source, delivery_header, delivery)

    response = post(served, source, body, headers)

    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    assert [hint.delivery_id for hint in served.sink.hints] == [delivery]


def test_body_over_the_cap_is_refused_413_before_the_route(served: Served) -> None:
    document = {**payload("github_push"), "padding": "p" * CAP}
    body = json.dumps(document).encode()

    response = post(served, "github", body, github_headers(body, "push"))

    assert response.status_code == 413
    assert served.sink.hints == []
    assert served.deliveries == []


def test_sink_failure_answers_503_and_the_redelivery_is_not_taken_for_a_duplicate(served: Served) -> None:
    delivery = new_delivery()
    served.sink.refusal = RuntimeError("queue closed")

    refused = post_github(served, "github_push", "push", delivery=delivery)
    served.sink.refusal = None
    redelivered = post_github(served, "github_push", "push", delivery=delivery)

    assert refused.status_code == 503
    assert redelivered.json() == {"status": "accepted"}
    assert [hint.delivery_id for hint in served.sink.hints] == [delivery]
    assert served.deliveries == [("github", "unavailable"), ("github", "accepted")]


# --------------------------------------------------------------------------- GitLab


def test_gitlab_push_is_accepted_with_the_after_sha(served: Served) -> None:
    key = new_delivery()

    response = post(
        served, "gitlab", body_of("gitlab_push"), gitlab_headers("Push Hook", idempotency_key=key)
    )

    assert response.json() == {"status": "accepted"}
    assert served.sink.hints == [FetchHint("gitlab", "Push Hook", key, MERGE_SHA, "refs/heads/main")]


def test_gitlab_merged_merge_request_is_accepted_with_the_merge_sha(served: Served) -> None:
    body = body_of("gitlab_merge_request_merged")

    response = post(served, "gitlab", body, gitlab_headers("Merge Request Hook"))

    assert response.json() == {"status": "accepted"}
    assert [(hint.event, hint.sha) for hint in served.sink.hints] == [("Merge Request Hook", MERGE_SHA)]


def test_gitlab_merge_request_opened_is_ignored(served: Served) -> None:
    body = body_of("gitlab_merge_request_opened")

    response = post(served, "gitlab", body, gitlab_headers("Merge Request Hook"))

    assert response.json() == {
        "status": "ignored",
        "reason": "merge request 'open': only a merge changes main",
    }
    assert served.sink.hints == []


def test_gitlab_update_of_an_already_merged_request_is_ignored(served: Served) -> None:
    document = payload("gitlab_merge_request_merged")
    document["object_attributes"]["action"] = "update"

    response = post(served, "gitlab", json.dumps(document).encode(), gitlab_headers("Merge Request Hook"))

    assert response.json()["status"] == "ignored"
    assert served.sink.hints == []


def test_gitlab_retry_with_the_same_idempotency_key_requests_one_fetch(served: Served) -> None:
    key, body = new_delivery(), body_of("gitlab_merge_request_merged")

    # A retry carries the same Idempotency-Key but a new X-Gitlab-Webhook-UUID (and here a new event UUID).
    answers = [
        post(served, "gitlab", body, gitlab_headers("Merge Request Hook", idempotency_key=key)).json()
        for _ in range(2)
    ]

    assert answers == [{"status": "accepted"}, {"status": "duplicate"}]
    assert [hint.delivery_id for hint in served.sink.hints] == [key]


def test_gitlab_without_idempotency_key_deduplicates_on_the_event_uuid(served: Served) -> None:
    event_uuid, body = new_delivery(), body_of("gitlab_push")

    answers = [
        post(served, "gitlab", body, gitlab_headers("Push Hook", event_uuid=event_uuid)).json()
        for _ in range(2)
    ]

    assert answers == [{"status": "accepted"}, {"status": "duplicate"}]
    assert [hint.delivery_id for hint in served.sink.hints] == [event_uuid]


@pytest.mark.parametrize(
    "token", ["wrong-token", SECRETS.gitlab[:-1], ""], ids=["wrong", "truncated", "missing"]
)
def test_wrong_or_missing_gitlab_token_is_refused_and_never_echoed(
    served: Served, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    headers = gitlab_headers("Push Hook", token="canary-wrong-token" if token == "wrong-token" else token)
    if not token:
        del headers["X-Gitlab-Token"]

    response = post(served, "gitlab", body_of("gitlab_push"), headers)

    assert (response.status_code, response.json()) == (401, {"detail": "invalid or missing token"})
    assert served.sink.hints == []
    assert "canary-wrong-token" not in caplog.text + response.text
    assert_no_secret_in(caplog.text)


def test_gitlab_events_that_do_not_move_branches_are_ignored(served: Served) -> None:
    response = post(served, "gitlab", body_of("gitlab_push"), gitlab_headers("Tag Push Hook"))

    assert response.json() == {"status": "ignored", "reason": "'Tag Push Hook' events do not change a branch"}
    assert served.sink.hints == []


# --------------------------------------------------------------------------- Gitea / Forgejo


def test_gitea_push_is_accepted(served: Served) -> None:
    body, delivery = body_of("gitea_push"), new_delivery()

    response = post(served, "gitea", body, gitea_headers(body, "push", delivery=delivery))

    assert response.json() == {"status": "accepted"}
    assert served.sink.hints == [FetchHint("gitea", "push", delivery, MERGE_SHA, "refs/heads/main")]


def test_gitea_merged_pull_request_is_accepted_once(served: Served) -> None:
    body, delivery = body_of("gitea_pull_request_merged"), new_delivery()

    answers = [
        post(served, "gitea", body, gitea_headers(body, "pull_request", delivery=delivery)).json()
        for _ in range(2)
    ]

    assert answers == [{"status": "accepted"}, {"status": "duplicate"}]
    assert served.sink.hints == [FetchHint("gitea", "pull_request", delivery, MERGE_SHA, "refs/heads/main")]


def test_forgejo_headers_are_understood(served: Served) -> None:
    body, delivery = body_of("gitea_push"), new_delivery()

    response = post(served, "gitea", body, forgejo_headers(body, "push", delivery=delivery))

    assert response.json() == {"status": "accepted"}
    assert [hint.delivery_id for hint in served.sink.hints] == [delivery]


def test_gitea_form_delivery_is_refused_with_a_hint_about_the_content_type(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # Gitea signs the JSON, then sends it form-encoded: the signature cannot match the body sent.
    document = body_of("gitea_push")
    headers = gitea_headers(document, "push") | {"Content-Type": FORM}

    response = post(served, "gitea", urlencode({"payload": document.decode()}).encode(), headers)

    assert response.status_code == 401
    assert served.sink.hints == []
    assert "set the webhook's POST content type to application/json" in caplog.text


def test_gitea_signature_of_another_body_is_refused(served: Served) -> None:
    headers = gitea_headers(body_of("gitea_push"), "push")

    response = post(served, "gitea", body_of("gitea_pull_request_merged"), headers)

    assert response.status_code == 401
    assert served.sink.hints == []


# --------------------------------------------------------------------------- generic


def test_generic_bearer_with_an_empty_body_asks_for_a_fetch(served: Served) -> None:
    response = post(served, "generic", b"", bearer())

    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    assert served.sink.hints == [FetchHint("generic", "generic", None, None, None)]


def test_generic_with_a_json_body_and_idempotency_key_fetches_once(served: Served) -> None:
    key = new_delivery()
    headers = bearer() | {"Content-Type": JSON, "Idempotency-Key": key}

    answers = [post(served, "generic", b'{"why": "manual"}', headers).json() for _ in range(2)]

    assert answers == [{"status": "accepted"}, {"status": "duplicate"}]
    assert [hint.delivery_id for hint in served.sink.hints] == [key]


@pytest.mark.parametrize(
    "headers",
    [bearer("wrong-token"), {}, {"Authorization": f"Basic {SECRETS.generic}"}, {"Authorization": "Bearer"}],
    ids=["wrong", "missing", "basic-scheme", "no-token"],
)
def test_generic_without_the_bearer_token_is_refused(served: Served, headers: dict[str, str]) -> None:
    response = post(served, "generic", b"", headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert served.sink.hints == []


def test_generic_non_json_body_is_refused_400(served: Served) -> None:
    response = post(served, "generic", b"fetch please", bearer() | {"Content-Type": "text/plain"})

    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"a non-empty body needs Content-Type {JSON}"},
    )
    assert served.sink.hints == []


# --------------------------------------------------------------------------- configuration


def test_a_route_without_a_secret_does_not_exist() -> None:
    router = webhook_router(WebhookSecrets(github=SECRETS.github), REPO, CollectingSink())

    with WebServer(create_app([router]), HttpOptions(port=0)) as server:
        statuses = {
            source: httpx.post(f"{server.url}/webhooks/{source}", content=b"{}", headers=bearer()).status_code
            for source in ("github", "gitlab", "gitea", "generic")
        }

    assert statuses == {"github": 401, "gitlab": 404, "gitea": 404, "generic": 404}


@pytest.mark.parametrize("source", ["github", "gitlab", "gitea", "generic"])
@pytest.mark.parametrize("blank", ["", "  \n"], ids=["empty", "blank"])
def test_an_empty_secret_refuses_to_start(source: str, blank: str) -> None:
    with pytest.raises(ValueError, match=f"the {source} webhook secret is empty"):
        webhook_router(replace(SECRETS, **{source: blank}), REPO, CollectingSink())


def test_secrets_never_appear_in_their_repr() -> None:
    assert_no_secret_in(repr(SECRETS))


def test_openapi_lists_the_enabled_routes(served: Served) -> None:
    paths = served.client.get("/openapi.json").json()["paths"]

    assert {path for path in paths if path.startswith("/webhooks/")} == {
        "/webhooks/github",
        "/webhooks/gitlab",
        "/webhooks/gitea",
        "/webhooks/generic",
    }


@pytest.mark.parametrize(
    "url, path",
    [
        ("https://github.com/acme/infra.git", "acme/infra"),
        ("git@gitlab.acme.example:acme/platform/infra.git", "acme/platform/infra"),
        ("ssh://git@git.acme.example:2222/acme/infra", "acme/infra"),
        ("/srv/git/infra.git", None),
        ("file:///srv/git/infra.git", None),
        ("https://example.com/infra.git", None),
    ],
)
def test_repository_path_is_read_from_remote_urls(url: str, path: str | None) -> None:
    assert repo_path(url) == path


def test_repo_match_from_a_remote_accepts_its_full_name_and_url() -> None:
    match = RepoMatch.from_remote("git@github.com:acme/infra.git", "main")

    assert match.matches(["Acme/Infra"])
    assert match.matches(["git@github.com:acme/infra"])
    assert not match.matches(["acme/infra-old", None, 42])


def test_repo_match_refuses_a_ref_for_a_branch() -> None:
    with pytest.raises(ValueError, match="give the branch name"):
        RepoMatch(frozenset({"acme/infra"}), "refs/heads/main")


def test_recent_deliveries_forget_the_oldest_first() -> None:
    recent = RecentDeliveries(2)
    for key in ("a", "b", "c"):
        recent.remember(("github", key))

    assert [("github", key) in recent for key in ("a", "b", "c")] == [False, True, True]


# --------------------------------------------------------------------------- anything at all


SAMPLES = {
    "github": [
        ("github_push", "push"),
        ("github_pull_request_merged", "pull_request"),
        ("github_ping", "ping"),
    ],
    "gitlab": [("gitlab_push", "Push Hook"), ("gitlab_merge_request_merged", "Merge Request Hook")],
    "gitea": [("gitea_push", "push"), ("gitea_pull_request_merged", "pull_request")],
    "generic": [],
}
SIGNATURE_HEADERS = {
    "github": ["X-Hub-Signature-256"],
    "gitlab": ["X-Gitlab-Token"],
    "gitea": ["X-Gitea-Signature", "X-Forgejo-Signature"],
    "generic": ["Authorization"],
}
EVENT_HEADERS = {
    "github": ["X-GitHub-Event"],
    "gitlab": ["X-Gitlab-Event"],
    "gitea": ["X-Gitea-Event", "X-Forgejo-Event"],
    "generic": [],
}
DELIVERY_HEADERS = ["X-GitHub-Delivery", "X-Gitea-Delivery", "Idempotency-Key", "X-Gitlab-Event-UUID"]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def proper_credential(source: str, body: bytes) -> str:
    """What the host would send in SIGNATURE_HEADERS[source] for this body."""
    secret = getattr(SECRETS, source)
    return {
        "github": lambda: "sha256=" + hmac_hex(secret, body),
        "gitlab": lambda: secret,
        "gitea": lambda: hmac_hex(secret, body),
        "generic": lambda: f"Bearer {secret}",
    }[source]()


def carries_valid_credential(source: str, body: bytes, headers: dict[str, str]) -> bool:
    """The rule as documented, computed independently: any signature header that is right."""
    expected = proper_credential(source, body)
    given = [headers[name] for name in SIGNATURE_HEADERS[source] if headers.get(name)]
    if source == "github":
        return any(value.lower() == expected for value in given)
    if source == "gitea":
        return any(value.lower().removeprefix("sha256=") == expected for value in given)
    if source == "generic":
        return any(
            value.split(" ", 1)[0].lower() == "bearer" and value.split(" ", 1)[1:] == [SECRETS.generic]
            for value in given
        )
    return expected in given


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """A request to one route: a sample as the host sends it, a sample with random headers, or noise."""
    source = draw(st.sampled_from(sorted(SAMPLES)))
    shape = draw(st.sampled_from(["as-sent", "mixed", "noise"] if SAMPLES[source] else ["noise"]))
    if shape == "noise":
        body = draw(
            st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | st.just(b"")
        )
        event = draw(
            st.sampled_from(["push", "pull_request", "ping", "Push Hook", "Merge Request Hook"]) | header_text
        )
    else:
        name, event = draw(st.sampled_from(SAMPLES[source]))
        body = body_of(name)
    headers: dict[str, str] = {}
    if shape == "as-sent":
        headers["Content-Type"] = JSON
        headers.update({name: event for name in EVENT_HEADERS[source]})
    else:
        content_type = draw(
            st.sampled_from([JSON, f"{JSON}; charset=utf-8", FORM, "text/plain", None]) | header_text
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        for name in EVENT_HEADERS[source]:
            if draw(st.booleans()):
                headers[name] = draw(st.just(event) | header_text)
    if draw(st.booleans()):
        headers[draw(st.sampled_from(DELIVERY_HEADERS))] = draw(st.sampled_from(["d-1", "d-2"]) | header_text)
    for name in SIGNATURE_HEADERS[source]:
        kind = draw(st.sampled_from(["proper", "proper", "other-body", "random", "absent"]))
        if kind == "proper":
            headers[name] = proper_credential(source, body)
        elif kind == "other-body":
            headers[name] = proper_credential(source, body + b" ")
        elif kind == "random":
            headers[name] = draw(header_text)
    return source, body, headers


@settings(max_examples=250, deadline=None)
@given(request=requests())
def test_random_requests_never_crash_and_only_valid_credentials_request_a_fetch(
    served_module: Served, request: tuple[str, bytes, dict[str, str]]
) -> None:
    source, body, headers = request
    sink = served_module.sink
    sink.refusal = None
    hints_before = len(sink.hints)

    response = post(served_module, source, body, headers)

    new_hints = sink.hints[hints_before:]
    event(
        f"{source} {response.status_code} {response.json().get('status', '')}"
    )  # --hypothesis-show-statistics
    if not carries_valid_credential(source, body, headers):
        assert (response.status_code, new_hints) == (401, [])
    else:
        assert response.status_code in (200, 202, 400)
        accepted = response.status_code == 202 and response.json() == {"status": "accepted"}
        assert len(new_hints) == (1 if accepted else 0)
        assert all(hint.source == source for hint in new_hints)
