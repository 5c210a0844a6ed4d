"""The Slack fakes, proven against the real slack-sdk clients they exist to drive.

If these pass, a tfops test that uses FakeSlack/FakeSocketMode is exercising slack-sdk's real
request building, retry handlers and Socket Mode client, not a mock of them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.error import URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient
from slackfake import MAX_BLOCKS, MAX_SECTION_TEXT, FakeSlack, FakeSocketMode, block_errors
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

CHANNEL = "C0TFOPS"
APPROVERS = "S0APPROVERS"
CANARY = "canary-s3cr3t/é&?=+"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack-sdk sends even 127.0.0.1 through HTTPS_PROXY/HTTP_PROXY when they are set.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(users={"U0ALICE": "alice", "U0BOB": "bob"}, usergroups={APPROVERS: ["U0ALICE", "U0BOB"]})
    with fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return slack.web_client()


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def approval_blocks(run_id: str) -> list[dict]:
    return [
        section("*stack* `network`: 1 to add"),
        {
            "type": "actions",
            "block_id": f"decide-{run_id}",
            "elements": [
                {"type": "button", "action_id": "approve", "style": "primary", "value": run_id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "reject", "style": "danger", "value": run_id,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ],
        },
    ]  # fmt: skip


# -- Web API --------------------------------------------------------------------------------------


def test_update_edits_the_message_it_names_and_leaves_the_others(slack: FakeSlack, client: WebClient) -> None:
    first = client.chat_postMessage(channel=CHANNEL, text="network: planning", blocks=[section("planning")])
    second = client.chat_postMessage(channel=CHANNEL, text="dns: planning")

    client.chat_update(channel=CHANNEL, ts=first["ts"], text="network: applied", blocks=[section("applied")])

    network, dns = slack.messages(CHANNEL)
    assert (network.ts, network.text, network.blocks) == (
        first["ts"],
        "network: applied",
        [section("applied")],
    )
    assert network.history == [("network: planning", [section("planning")])]
    assert (dns.ts, dns.text, dns.edits) == (second["ts"], "dns: planning", 0)
    assert first["ts"] != second["ts"]


def test_update_of_an_unknown_ts_is_message_not_found(client: WebClient) -> None:
    client.chat_postMessage(channel=CHANNEL, text="x")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1.000999", text="y")
    assert raised.value.response["error"] == "message_not_found"


def test_ephemerals_thread_replies_and_permalinks_are_kept_apart(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="network: awaiting approval")
    client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="error tail")
    client.chat_postEphemeral(channel=CHANNEL, user="U0CAROL", text="you are not an approver")

    (reply,) = slack.thread(CHANNEL, parent["ts"])
    assert reply.text == "error tail"
    (refusal,) = slack.ephemerals(CHANNEL)
    assert (refusal.user, refusal.text) == ("U0CAROL", "you are not an approver")
    assert refusal.ts not in {m.ts for m in slack.messages(CHANNEL)}
    permalink = client.chat_getPermalink(channel=CHANNEL, message_ts=parent["ts"])["permalink"]
    assert permalink.endswith(parent["ts"].replace(".", ""))
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.chat_postMessage(channel=CHANNEL, thread_ts="1.000404", text="orphan")


def test_section_text_over_3000_characters_is_invalid_blocks(slack: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel=CHANNEL, text="fits", blocks=[section("x" * MAX_SECTION_TEXT)])

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(
            channel=CHANNEL, text="too long", blocks=[section("x" * (MAX_SECTION_TEXT + 1))]
        )

    assert raised.value.response["error"] == "invalid_blocks"
    assert raised.value.response["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    assert [m.text for m in slack.messages(CHANNEL)] == ["fits"]


@pytest.mark.parametrize(("count", "accepted"), [(MAX_BLOCKS, True), (MAX_BLOCKS + 1, False)])
def test_at_most_50_blocks_are_accepted(client: WebClient, count: int, accepted: bool) -> None:
    blocks = [section(f"line {i}") for i in range(count)]
    if accepted:
        assert client.chat_postMessage(channel=CHANNEL, text="many", blocks=blocks)["ok"]
    else:
        with pytest.raises(SlackApiError, match="invalid_blocks"):
            client.chat_postMessage(channel=CHANNEL, text="many", blocks=blocks)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "no_text"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": "sum", "blocks": [section("y" * 2_500) for _ in range(5)]}, "msg_blocks_too_long"),
        ({"text": "x", "blocks": "[not json"}, "invalid_blocks_format"),
        (
            {"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
            "invalid_blocks",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_content_slack_refuses_is_refused_with_its_error_name(
    client: WebClient, params: dict, error: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, **params)
    assert raised.value.response["error"] == error


def test_block_errors_point_at_each_broken_limit() -> None:
    button = {
        "type": "button",
        "action_id": "a",
        "value": "v" * 2001,
        "text": {"type": "plain_text", "text": "b"},
    }
    blocks = [
        {"type": "header", "block_id": "same", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "section", "block_id": "same", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
        {"type": "actions", "elements": [button]},
        {"type": "tabl"},
    ]
    assert block_errors(blocks) == [
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        "no more than 10 items allowed [json-pointer:/blocks/1/fields]",
        "duplicate block_id [json-pointer:/blocks/1/block_id]",
        "must be less than 2001 characters [json-pointer:/blocks/2/elements/0/value]",
        "unsupported type [json-pointer:/blocks/3/type]",
    ]
    assert block_errors(approval_blocks("r1")) == []


def test_tokens_are_checked_like_slack(slack: FakeSlack) -> None:
    wrong = slack.web_client(token="xoxb-stolen")
    app_level = slack.web_client(token=slack.app_token)

    with pytest.raises(SlackApiError, match="invalid_auth"):
        wrong.chat_postMessage(channel=CHANNEL, text="x")
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        app_level.chat_postMessage(channel=CHANNEL, text="x")
    assert slack.calls("chat.postMessage")[0].headers["Authorization"] == "Bearer xoxb-stolen"
    assert slack.messages() == []


def test_429_is_retried_by_slack_sdk_after_retry_after(slack: FakeSlack) -> None:
    client = slack.web_client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    slack.fail_next(1, status=429, retry_after=1)

    response = client.chat_postMessage(channel=CHANNEL, text="after the limit")

    limited, delivered = slack.calls("chat.postMessage")
    assert (limited.status, limited.error, delivered.ok) == (429, "ratelimited", True)
    assert delivered.at - limited.at >= 1.0  # slack-sdk slept Retry-After (plus up to 1 s of jitter)
    assert [m.ts for m in slack.messages(CHANNEL)] == [response["ts"]]


def test_429_without_a_retry_handler_surfaces_with_its_retry_after(
    slack: FakeSlack, client: WebClient
) -> None:
    slack.fail_next(1, status=429, retry_after=7, method="chat.update")
    client.chat_postMessage(channel=CHANNEL, text="not limited")

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts=slack.messages()[0].ts, text="limited")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"


def test_outage_answers_503_until_it_ends(slack: FakeSlack, client: WebClient) -> None:
    slack.go_down(0.3)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="during")
    assert raised.value.response.status_code == 503

    time.sleep(0.35)
    assert client.chat_postMessage(channel=CHANNEL, text="after")["ok"]
    assert [m.text for m in slack.messages(CHANNEL)] == ["after"]


def test_outage_by_reset_cuts_connections(slack: FakeSlack) -> None:
    client = slack.web_client(retry_handlers=[])  # slack-sdk retries one connection error by default
    slack.go_down(30, how="reset")

    with pytest.raises((URLError, ConnectionError)):
        client.chat_postMessage(channel=CHANNEL, text="during")

    slack.come_back()
    assert client.chat_postMessage(channel=CHANNEL, text="after")["ok"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [0, 200]


def test_outage_by_refusal_stops_listening_then_listens_again_on_the_same_url(slack: FakeSlack) -> None:
    client = slack.web_client(retry_handlers=[])
    slack.go_down(0.3, how="refuse")

    with pytest.raises(URLError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="during")
    assert isinstance(raised.value.reason, ConnectionRefusedError)

    time.sleep(0.4)
    assert client.chat_postMessage(channel=CHANNEL, text="after")["ok"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [200]


def test_files_upload_v2_content_lands_in_the_thread(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="plan too long for a message")
    plan = "# aws_instance.web will be replaced\n" * 200

    response = client.files_upload_v2(
        channel=CHANNEL, thread_ts=parent["ts"], content=plan, filename="plan.txt", title="Full plan",
        initial_comment="the whole plan",
    )  # fmt: skip

    (uploaded,) = slack.files(CHANNEL)
    assert (uploaded.id, uploaded.text, uploaded.title) == (response["file"]["id"], plan, "Full plan")
    assert (uploaded.thread_ts, uploaded.initial_comment) == (parent["ts"], "the whole plan")
    assert uploaded.declared_length == len(plan.encode())
    assert [c.method for c in slack.calls()][1:] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]


def test_usergroup_members_and_user_names_are_the_configured_ones(
    slack: FakeSlack, client: WebClient
) -> None:
    assert client.usergroups_users_list(usergroup=APPROVERS)["users"] == ["U0ALICE", "U0BOB"]
    assert client.users_info(user="U0BOB")["user"]["name"] == "bob"
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S0NOBODY")
    slack.set_usergroup(APPROVERS, ["U0CAROL"])
    assert client.usergroups_users_list(usergroup=APPROVERS)["users"] == ["U0CAROL"]


def test_all_text_finds_a_secret_however_it_was_encoded(slack: FakeSlack, client: WebClient) -> None:
    in_json, in_form, in_file = (f"{CANARY}-{where}" for where in ("json", "form", "file"))

    client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section(f"password = {in_json}")])
    client.files_upload_v2(
        channel=CHANNEL, content=f"pw={in_file}", filename="p.txt", initial_comment=in_form
    )

    text = slack.all_text()
    assert in_json in text and in_form in text and in_file in text
    (completion,) = slack.calls("files.completeUploadExternal")
    assert in_form.encode() not in completion.body  # percent-encoded on the wire, found all the same
    assert slack.bot_token not in text


def test_stopping_frees_the_port() -> None:
    with FakeSlack() as fake:
        port = int(fake.url.rsplit(":", 1)[1])
        assert fake.web_client().auth_test()["user_id"]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# -- Socket Mode ----------------------------------------------------------------------------------


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as fake:
        yield fake


@pytest.fixture
def received() -> list[SocketModeRequest]:
    return []


@pytest.fixture
def socket_client(
    slack: FakeSlack, socket_mode: FakeSocketMode, received: list[SocketModeRequest]
) -> Iterator[SocketModeClient]:
    # ping_interval is how often slack-sdk checks its connection, hence how soon it notices a drop.
    client = SocketModeClient(app_token=slack.app_token, web_client=slack.web_client(), ping_interval=1)

    def keep_and_acknowledge(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(keep_and_acknowledge)
    try:
        client.connect()
        socket_mode.wait_for_connection()
        yield client
    finally:
        client.close()


def test_socket_mode_client_receives_a_click_and_acknowledges_it(
    slack: FakeSlack,
    socket_mode: FakeSocketMode,
    socket_client: SocketModeClient,
    received: list[SocketModeRequest],
) -> None:
    posted = slack.web_client().chat_postMessage(channel=CHANNEL, text="ok?", blocks=approval_blocks("r7"))

    clicked = socket_mode.send_block_actions(
        "U0ALICE", "approve", "r7", channel=CHANNEL, message_ts=posted["ts"]
    )

    assert socket_mode.wait_for_ack(clicked, timeout=3)["envelope_id"] == clicked
    (request,) = received
    payload = request.payload
    assert (request.type, request.envelope_id, payload["type"]) == ("interactive", clicked, "block_actions")
    assert (payload["user"]["id"], payload["user"]["name"]) == ("U0ALICE", "alice")
    assert payload["container"]["message_ts"] == payload["message"]["ts"] == posted["ts"]
    assert payload["message"]["blocks"] == approval_blocks("r7")
    (action,) = payload["actions"]
    assert (action["action_id"], action["value"], action["block_id"]) == ("approve", "r7", "decide-r7")
    (opened,) = slack.calls("apps.connections.open")
    assert opened.headers["Authorization"] == f"Bearer {slack.app_token}"
    assert WebhookClient(payload["response_url"]).send(text="approved by alice").status_code == 200
    assert slack.calls("response_url")[0].params["text"] == "approved by alice"


def test_socket_mode_client_reconnects_after_a_disconnect_notice_and_after_a_drop(
    slack: FakeSlack, socket_mode: FakeSocketMode, socket_client: SocketModeClient
) -> None:
    socket_mode.send_disconnect("refresh_requested")
    socket_mode.wait_for_connection(opened=2)
    after_notice = socket_mode.send_block_actions("U0BOB", "reject", "r8", channel=CHANNEL)
    assert socket_mode.wait_for_ack(after_notice, timeout=3)

    socket_mode.drop_connections()
    socket_mode.wait_for_connection(opened=3)
    after_drop = socket_mode.send_block_actions("U0BOB", "reject", "r9", channel=CHANNEL)
    assert socket_mode.wait_for_ack(after_drop, timeout=3)

    assert len(slack.calls("apps.connections.open")) == 3


def test_a_socket_mode_ticket_works_once(socket_mode: FakeSocketMode) -> None:
    url = socket_mode.issue_url()
    with ws_connect(url, open_timeout=2) as first:
        assert '"hello"' in first.recv(timeout=2)
    with pytest.raises(InvalidStatus, match="401"), ws_connect(url, open_timeout=2):
        pass
    assert socket_mode.rejected_handshakes == 1
