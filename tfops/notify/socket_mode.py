"""Slack Socket Mode: button clicks reach tfops over an outbound WebSocket, with no inbound port.

`SocketModeTransport` owns one slack-sdk `SocketModeClient` (the built-in, thread-based one). Each
envelope is acknowledged at once, then an ``interactive`` payload is handed to an `InteractionSink`
(which returns at once; the decision is made on the sink's own thread). Other envelope types are
acknowledged and dropped: tfops subscribes to no events and has no slash commands.

Why the built-in client: it is synchronous like the rest of the daemon (threads, no event loop to
host), needs no dependency beyond slack-sdk, and reconnects by itself. The ``websockets`` and
``aiohttp`` clients are asyncio-only and would need a loop thread and a runtime dependency that
tfops does not otherwise have (``websockets`` is a test dependency only); the ``websocket_client``
one needs the websocket-client package.

What the sdk does, and what we add:

- Connecting: the client's own monitor reconnects every ``ping_interval`` once a first `connect()`
  has returned, but a first `connect()` that raises (Slack unreachable, 5xx, bad token) starts no
  monitor. So `start()` makes that first connection from a thread of ours that retries with
  backoff until it succeeds or `stop()` is called; after that the sdk keeps the connection, and
  while Slack stays unreachable it logs two errors per ``ping_interval``.
- Reconnecting: on Slack's ``disconnect`` notice the sdk opens the new connection before closing
  the old. On a close frame from the server its immediate reconnect is a no-op (the connection
  still counts as open at that moment); its monitor reconnects at the next ``ping_interval`` tick.
  A silent network loss is noticed after 4 x ``ping_interval`` without a pong.
- Threads: the client starts two threads when constructed (reader, message queue), a monitor on
  first connect and a listener pool on first message; `close()` joins them all. `stop()` closes
  the client, so no thread of the sdk or ours is left, except our connect thread when it is stuck
  in a request to Slack for longer than ``timeout`` (a daemon thread that closes the client itself
  when that request returns).
- Logging: at DEBUG, slack-sdk logs the ``apps.connections.open`` response body (the wss URL, whose
  ticket lets anyone open a connection as this app) and every envelope (``response_url``, the
  legacy verification token); the handshake request with the ticket is logged when
  ``trace_enabled``. The app token itself goes in the Authorization header, which the sdk redacts.
  So both sdk clients log through our own logger `SDK_LOGGER_NAME`, pinned at WARNING (the
  daemon's level does not reach it), and every record of it and of this module goes through
  `redact_secrets`, in case someone turns it up to troubleshoot.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tfops.errors import ConfigError
from tfops.notify.interactions import InteractionSink

log = logging.getLogger(__name__)

SDK_LOGGER_NAME = f"{__name__}.sdk"
TRANSPORT = "socket"
LISTENER_THREADS = 4  # a listener only acknowledges and hands over; it never waits on work
MAX_RETRY_DELAY = 60.0
STOP_GRACE = 5.0  # beyond `timeout`: the sdk's socket connect and handshake read, 3 s each at most

_REDACTED = "[redacted]"
_SECRET_PATTERNS = [
    # Slack tokens: app-level (xapp-), bot/user/config (xoxb-, xoxp-, xoxe-...).
    (re.compile(r"\b(?:xapp|xox[a-z])-[A-Za-z0-9-]+"), _REDACTED),
    # The single-use ticket of a Socket Mode URL.
    (re.compile(r"(ticket=)[^&\s\"'\\]+"), rf"\1{_REDACTED}"),
    # A response_url posts to the channel for 30 minutes without any token.
    (re.compile(r"(hooks\.slack\.com/)[^\s\"'\\]+"), rf"\1{_REDACTED}"),
    # The legacy verification token inside interaction payloads.
    (re.compile(r"(\"token\"\s*:\s*\")[^\"]*"), rf"\1{_REDACTED}"),
    # user:password in a proxy URL (the sdk puts the proxy URL in its connection errors).
    (re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"), rf"\1{_REDACTED}@"),
]


def redact_secrets(text: str) -> str:
    """`text` with Slack tokens, Socket Mode tickets, response URLs and URL passwords blanked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message (and traceback) through `redact_secrets` before any handler sees it.

    The traceback is folded into the message because formatters differ in whether they read
    ``exc_text`` or format ``exc_info`` again (tfops' JSON formatter does the latter).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            message += "\n" + record.exc_text
        record.msg, record.args = redact_secrets(message), None
        record.exc_info, record.exc_text = None, None
        return True


_sdk_log = logging.getLogger(SDK_LOGGER_NAME)
_sdk_log.setLevel(logging.WARNING)
_sdk_log.addFilter(RedactSecretsFilter())
log.addFilter(RedactSecretsFilter())


def _describe(error: BaseException) -> str:
    return redact_secrets(f"{type(error).__name__}: {error}")


def _log_hello(client: BaseSocketModeClient, message: dict, raw: str | None) -> None:
    # Slack greets every new connection. Its count matters: Slack spreads envelopes over all the
    # open connections of an app, so two daemons sharing one Slack app get each other's clicks.
    if message.get("type") == "hello":
        log.info(
            "Slack Socket Mode: connected (%s connection(s) open for this Slack app)",
            message.get("num_connections", "?"),
        )


class _PromptlyClosingClient(SocketModeClient):
    def close(self) -> None:
        # The sdk's message processor waits up to 1 s on its queue before it sees `closed`; a None
        # (which it skips) wakes it at once.
        self.closed = True
        self.message_queue.put(None)
        super().close()


class SocketModeTransport:
    """Receives Slack interactions over Socket Mode and hands them to `sink`.

    ``app_token``: the app-level token (``xapp-...``, scope ``connections:write``).
    ``base_url``: Slack's Web API, where ``apps.connections.open`` hands out WebSocket URLs.
    ``timeout``: seconds for that HTTP call. ``ping_interval``: how often the sdk pings and checks
    its connection (so how soon it notices a drop). ``retry_delay``: the first wait before retrying
    a failed first connection; it doubles up to `MAX_RETRY_DELAY`.
    """

    def __init__(
        self,
        app_token: str,
        sink: InteractionSink,
        *,
        base_url: str = "https://slack.com/api/",
        timeout: float = 30,
        ping_interval: float = 5.0,
        retry_delay: float = 1.0,
    ) -> None:
        if not app_token.startswith("xapp-"):
            raise ConfigError(
                "the Slack app token is not an app-level token",
                hint="Socket Mode needs the app-level token (xapp-…) with connections:write, "
                "not the bot token (xoxb-…); create one under Basic Information → App-Level Tokens",
            )
        self._app_token = app_token
        self._sink = sink
        self._base_url = base_url
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._client: SocketModeClient | None = None
        self._connector: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        # The token stays out of reprs, which end up in tracebacks and debuggers.
        return f"SocketModeTransport(base_url={self._base_url!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """Whether a WebSocket to Slack is open right now."""
        client = self._client
        return client is not None and client.is_connected()

    def start(self) -> None:
        """Connect in the background and return at once; a second call while running does nothing."""
        with self._lock:
            if self._client is not None:
                return
            self._stopping = threading.Event()
            self._client = self._new_client()
            self._connector = threading.Thread(
                target=self._connect_until_up,
                args=(self._client, self._stopping),
                name="tfops-slack-socket-connect",
                daemon=True,
            )
            self._connector.start()

    def stop(self) -> None:
        """Close the connection and join the client's threads; `start()` may be called again after."""
        with self._lock:
            client, connector, stopping = self._client, self._connector, self._stopping
            self._client = self._connector = None
        if client is None:
            return
        stopping.set()
        if connector is not None:
            connector.join(timeout=self._timeout + STOP_GRACE)
            if connector.is_alive():
                log.warning(
                    "Slack Socket Mode: still waiting on Slack to connect; it closes when Slack answers"
                )
        client.close()
        log.info("Slack Socket Mode: closed")

    # -- inside ---------------------------------------------------------------------------------

    def _new_client(self) -> SocketModeClient:
        # No retry handlers: a failed connection is retried by our connect loop, later by the sdk's monitor.
        web_client = WebClient(
            base_url=self._base_url,
            timeout=self._timeout,  # type: ignore[arg-type]
            logger=_sdk_log,
            retry_handlers=[],
        )
        client = _PromptlyClosingClient(
            app_token=self._app_token,
            web_client=web_client,
            logger=_sdk_log,
            ping_interval=self._ping_interval,
            concurrency=LISTENER_THREADS,
        )
        client.message_listeners.append(_log_hello)
        client.socket_mode_request_listeners.append(self._on_request)
        return client

    def _connect_until_up(self, client: SocketModeClient, stopping: threading.Event) -> None:
        delay = self._retry_delay
        while not stopping.is_set():
            try:
                client.connect()
            except Exception as error:  # noqa: BLE001 - any failure is retried; the daemon goes on
                log.warning(
                    "Slack Socket Mode: could not open a connection (%s); retrying in %.1fs",
                    _describe(error),
                    delay,
                )
                stopping.wait(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if stopping.is_set():
                # stop() gave up waiting for us and closed the client; close what connect() opened.
                client.close()
            return

    def _on_request(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        # Acknowledge first: Slack shows the user an error after 3 s without an ack, and the work
        # behind a click (git fetch, plan hash check) takes longer than that.
        try:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        except Exception as error:  # noqa: BLE001 - the click is handed over all the same
            # The click is still genuine; a decision taken twice is a no-op downstream.
            log.warning(
                "Slack Socket Mode: could not acknowledge envelope %s (%s)",
                request.envelope_id,
                _describe(error),
            )
        if request.type != "interactive":
            log.debug("Slack Socket Mode: ignored a %s envelope (%s)", request.type, request.envelope_id)
            return
        self._hand_over(request)

    def _hand_over(self, request: SocketModeRequest) -> None:
        payload: dict[str, Any] = request.payload
        try:
            self._sink.submit(payload, transport=TRANSPORT)
        except Exception:
            log.exception(
                "Slack Socket Mode: the interaction sink failed on envelope %s (%s)",
                request.envelope_id,
                payload.get("type"),
            )
