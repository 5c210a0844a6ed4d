"""Socket Mode transport: the real slack-sdk client against FakeSlack + FakeSocketMode.

Each scenario starts a `SocketModeTransport` against a local Slack and drives it with envelopes;
what reaches the sink is collected by a hand-written sink.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from slackfake import FakeSlack, FakeSocketMode

from tfops.errors import ConfigError
from tfops.notify.socket_mode import SDK_LOGGER_NAME, SocketModeTransport, redact_secrets

CHANNEL = "C0TFOPS"
PING_INTERVAL = 0.3  # how soon the sdk notices a dropped connection and reconnects
WAIT = 5.0


class CollectingSink:
    """Keeps every submitted interaction; `wait_for(n)` blocks until n have arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[Mapping[str, Any], str]] = []
        self._cond = threading.Condition()

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        with self._cond:
            self.received.append((payload, transport))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[tuple[Mapping[str, Any], str]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.received)} of {count} interactions arrived within {timeout}s")
            return list(self.received)

    def action_values(self) -> list[str]:
        with self._cond:
            return [payload["actions"][0]["value"] for payload, _ in self.received]


class BlockingSink(CollectingSink):
    """Holds each caller until `release` is set; records when it let the first one go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned_at: float | None = None

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        self.entered.set()
        self.release.wait(WAIT)
        self.returned_at = time.monotonic()
        super().submit(payload, transport=transport)


class FailingFirstSink(CollectingSink):
    """Raises on the first interaction, as a sink with a bug would; takes the later ones."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("approval desk is broken")
        super().submit(payload, transport=transport)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack-sdk sends even 127.0.0.1 (the WebSocket too) through HTTPS_PROXY/HTTP_PROXY when set.
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
    with FakeSlack(users={"U0ALICE": "alice", "U0BOB": "bob"}) as fake:
        yield fake


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as fake:
        yield fake


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()


def make_transport(slack: FakeSlack, sink: CollectingSink, **options: Any) -> SocketModeTransport:
    return SocketModeTransport(
        slack.app_token, sink, base_url=slack.api_url, timeout=5, ping_interval=PING_INTERVAL, **options
    )


@pytest.fixture
def transport(
    slack: FakeSlack, socket_mode: FakeSocketMode, sink: CollectingSink
) -> Iterator[SocketModeTransport]:
    started = make_transport(slack, sink)
    started.start()
    try:
        socket_mode.wait_for_connection()
        yield started
    finally:
        started.stop()


def click(socket_mode: FakeSocketMode, run_id: str, user: str = "U0ALICE") -> str:
    """A click on Approve; returns the envelope id once the transport has acknowledged it."""
    envelope_id = socket_mode.send_block_actions(user, "approve", run_id, channel=CHANNEL)
    socket_mode.wait_for_ack(envelope_id, timeout=WAIT)
    return envelope_id


# -- delivery ---------------------------------------------------------------------------------------


def test_a_click_is_acknowledged_and_its_payload_reaches_the_sink_as_a_socket_interaction(
    socket_mode: FakeSocketMode, transport: SocketModeTransport, sink: CollectingSink
) -> None:
    envelope_id = click(socket_mode, "run-7")

    ((payload, transport_name),) = sink.wait_for(1)
    (sent,) = socket_mode.sent()
    assert sent["envelope_id"] == envelope_id
    assert payload == sent["payload"]
    assert (payload["type"], payload["user"]["id"], payload["actions"][0]["value"]) == (
        "block_actions",
        "U0ALICE",
        "run-7",
    )
    assert transport_name == "socket"
    assert transport.connected


def test_the_ack_is_sent_while_a_slow_sink_is_still_working(
    slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    sink = BlockingSink()
    transport = make_transport(slack, sink)
    transport.start()
    try:
        socket_mode.wait_for_connection()
        envelope_id = socket_mode.send_block_actions("U0ALICE", "approve", "run-8", channel=CHANNEL)

        assert sink.entered.wait(WAIT)
        ack = socket_mode.wait_for_ack(envelope_id, timeout=WAIT)  # the sink has not returned yet
        assert sink.returned_at is None
    finally:
        sink.release.set()
        sink.wait_for(1)
        transport.stop()
    assert sink.returned_at is not None and ack["_received_at"] < sink.returned_at
    assert ack == {"envelope_id": envelope_id, "_received_at": ack["_received_at"]}


def test_envelopes_that_are_not_interactions_are_acknowledged_and_not_passed_on(
    socket_mode: FakeSocketMode, transport: SocketModeTransport, sink: CollectingSink
) -> None:
    event = socket_mode.send_envelope(
        "events_api", {"type": "event_callback", "event": {"type": "app_mention"}}
    )
    command = socket_mode.send_envelope("slash_commands", {"command": "/tfops", "text": "status"})
    socket_mode.wait_for_ack(event, timeout=WAIT)
    socket_mode.wait_for_ack(command, timeout=WAIT)

    click(socket_mode, "run-9")

    sink.wait_for(1)
    time.sleep(0.1)  # room for a wrongly forwarded envelope to show up
    assert sink.action_values() == ["run-9"]


def test_a_sink_that_raises_does_not_stop_later_deliveries(
    slack: FakeSlack, socket_mode: FakeSocketMode, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingFirstSink()
    transport = make_transport(slack, sink)
    transport.start()
    try:
        socket_mode.wait_for_connection()
        first = click(socket_mode, "run-10")
        click(socket_mode, "run-11")

        sink.wait_for(1)
        assert transport.connected
    finally:
        transport.stop()
    assert (sink.failures, sink.action_values()) == (1, ["run-11"])
    (failure,) = [r for r in caplog.records if "sink failed" in r.getMessage()]
    assert failure.levelno == logging.ERROR
    assert first in failure.getMessage() and "approval desk is broken" in failure.getMessage()


# -- reconnecting -----------------------------------------------------------------------------------


def test_after_a_refresh_notice_a_new_connection_delivers_the_next_click(
    slack: FakeSlack, socket_mode: FakeSocketMode, transport: SocketModeTransport, sink: CollectingSink
) -> None:
    click(socket_mode, "run-12")

    socket_mode.send_disconnect("refresh_requested")
    socket_mode.wait_for_connection(opened=2)
    click(socket_mode, "run-13")

    sink.wait_for(2)
    assert sink.action_values() == ["run-12", "run-13"]
    assert len(slack.calls("apps.connections.open")) == 2


def test_after_a_dropped_connection_a_new_one_delivers_the_next_click(
    slack: FakeSlack, socket_mode: FakeSocketMode, transport: SocketModeTransport, sink: CollectingSink
) -> None:
    socket_mode.drop_connections()
    socket_mode.wait_for_connection(opened=2)
    click(socket_mode, "run-14")

    sink.wait_for(1)
    assert sink.action_values() == ["run-14"]
    assert len(slack.calls("apps.connections.open")) == 2
    assert transport.connected


def test_slack_unreachable_at_start_is_retried_without_holding_up_the_daemon(
    slack: FakeSlack, socket_mode: FakeSocketMode, sink: CollectingSink, caplog: pytest.LogCaptureFixture
) -> None:
    slack.go_down(0.6, how="503")
    transport = make_transport(slack, sink, retry_delay=0.2)

    began = time.monotonic()
    transport.start()
    returned_after = time.monotonic() - began
    try:
        assert not transport.connected
        socket_mode.wait_for_connection(timeout=WAIT)
        click(socket_mode, "run-15")
        sink.wait_for(1)
    finally:
        transport.stop()
    assert returned_after < 0.2
    statuses = [c.status for c in slack.calls("apps.connections.open")]
    assert statuses[0] == 503 and statuses[-1] == 200
    retries = [r for r in caplog.records if "could not open a connection" in r.getMessage()]
    assert retries and all(r.levelno == logging.WARNING for r in retries)
    assert "service_unavailable" in retries[0].getMessage()


def test_stop_while_slack_refuses_connections_returns_promptly_and_leaves_no_threads(
    slack: FakeSlack, sink: CollectingSink
) -> None:
    slack.go_down(30, how="refuse")
    transport = make_transport(slack, sink, retry_delay=0.1)
    transport.start()
    time.sleep(0.3)  # a few failed attempts

    began = time.monotonic()
    transport.stop()

    assert time.monotonic() - began < 2
    assert not transport.connected
    slack.come_back()


def test_a_stopped_transport_can_be_started_again(
    socket_mode: FakeSocketMode, transport: SocketModeTransport, sink: CollectingSink
) -> None:
    transport.stop()
    assert not transport.connected

    transport.start()
    socket_mode.wait_for_connection(opened=2)
    click(socket_mode, "run-16")

    assert sink.wait_for(1)[0][0]["actions"][0]["value"] == "run-16"


# -- secrets ----------------------------------------------------------------------------------------


def _logged_by_tfops_and_slack_sdk(caplog: pytest.LogCaptureFixture) -> str:
    # "websockets.*" records come from FakeSocketMode, the Slack side of the test, which logs
    # the request line (ticket included) of every connection it accepts.
    return "\n".join(
        logging.Formatter("%(name)s %(message)s").format(r)
        for r in caplog.records
        if not r.name.startswith("websockets")
    )


def _tickets(slack: FakeSlack) -> list[str]:
    urls = [call.response["url"] for call in slack.calls("apps.connections.open") if call.ok]
    return [re.search(r"ticket=(\w+)", url).group(1) for url in urls]  # type: ignore[union-attr]


def _connect_click_refresh_and_drop(slack: FakeSlack, socket_mode: FakeSocketMode) -> None:
    transport = make_transport(slack, CollectingSink())
    transport.start()
    try:
        socket_mode.wait_for_connection()
        click(socket_mode, "run-17")
        socket_mode.send_disconnect("refresh_requested")
        socket_mode.wait_for_connection(opened=2)
        socket_mode.drop_connections()
        socket_mode.wait_for_connection(opened=3)
        click(socket_mode, "run-18")
    finally:
        transport.stop()


def test_the_app_token_and_connection_tickets_stay_out_of_the_logs_at_debug(
    slack: FakeSlack, socket_mode: FakeSocketMode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    _connect_click_refresh_and_drop(slack, socket_mode)

    logged = _logged_by_tfops_and_slack_sdk(caplog)
    assert "Slack Socket Mode: connected" in logged
    assert slack.app_token not in logged
    tickets = _tickets(slack)
    assert len(tickets) == 3
    assert not [t for t in tickets if t in logged]
    # The fake's own log shows the tickets were there to leak.
    assert tickets[0] in caplog.text


def test_with_the_sdk_logger_turned_up_to_debug_its_tickets_are_redacted(
    slack: FakeSlack, socket_mode: FakeSocketMode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=SDK_LOGGER_NAME)  # an operator troubleshooting

    _connect_click_refresh_and_drop(slack, socket_mode)

    logged = _logged_by_tfops_and_slack_sdk(caplog)
    assert "apps.connections.open" in logged and "ticket=[redacted]" in logged
    assert '"token": "[redacted]"' in logged  # the verification token inside each payload
    assert slack.app_token not in logged
    assert not [t for t in _tickets(slack) if t in logged]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auth with xapp-1-A0FAKE-123-abcdef failed", "auth with [redacted] failed"),
        ("bot xoxb-1234-5678-abcd and user xoxp-9-z", "bot [redacted] and user [redacted]"),
        (
            '{"ok": true, "url": "wss://wss-primary.slack.com/link/?ticket=12ab-cd&app_id=A1"}',
            '{"ok": true, "url": "wss://wss-primary.slack.com/link/?ticket=[redacted]&app_id=A1"}',
        ),
        (
            '"response_url": "https://hooks.slack.com/actions/T1/123/abcDEF"',
            '"response_url": "https://hooks.slack.com/[redacted]"',
        ),
        ('"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl"', '"token": "[redacted]"'),
        ("proxy http://ops:hunter2@proxy:3128 refused", "proxy http://[redacted]@proxy:3128 refused"),
        ("session 4b63f9e1 established (127.0.0.1:443)", "session 4b63f9e1 established (127.0.0.1:443)"),
    ],
)
def test_redaction_blanks_slack_secrets_and_nothing_else(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


def test_secrets_in_a_logged_traceback_are_redacted(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    sdk_log = logging.getLogger(SDK_LOGGER_NAME)
    try:
        raise ConnectionError(f"handshake to ws://127.0.0.1/link/?ticket=abc123 with {slack.app_token}")
    except ConnectionError:
        sdk_log.exception("Failed to establish a connection")

    (record,) = [r for r in caplog.records if r.name == SDK_LOGGER_NAME]
    assert "ticket=[redacted] with [redacted]" in caplog.text
    assert "abc123" not in caplog.text and slack.app_token not in caplog.text
    assert record.exc_info is None  # folded into the message, whatever formatter runs


def test_a_bot_token_is_refused_without_repeating_it(sink: CollectingSink) -> None:
    with pytest.raises(ConfigError, match="not an app-level token") as raised:
        SocketModeTransport("xoxb-123-secret", sink)
    assert "xoxb-123-secret" not in str(raised.value)
    assert "xapp-" in str(raised.value)


def test_the_repr_does_not_show_the_token(slack: FakeSlack, sink: CollectingSink) -> None:
    transport = make_transport(slack, sink)
    assert slack.app_token not in repr(transport)
    assert "connected=False" in repr(transport)
