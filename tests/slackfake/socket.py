"""A local stand-in for Slack's Socket Mode WebSocket endpoint, for the real ``SocketModeClient``.

Build it with the ``FakeSlack`` whose ``apps.connections.open`` should hand out its URLs::

    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        client = SocketModeClient(app_token=slack.app_token, web_client=slack.web_client())
        client.connect()
        socket_mode.wait_for_connection()
        envelope_id = socket_mode.send_block_actions("U1", "approve", "run-7")
        socket_mode.wait_for_ack(envelope_id)

Like Slack, each URL carries a single-use ticket, the server greets every connection with a
``hello``, sends each envelope to one connection (the newest), and expects the client to answer
with ``{"envelope_id": ...}``. ``send_disconnect`` asks the client to reconnect the way Slack does
before it recycles a connection; ``drop_connections`` cuts them without a word.
"""

from __future__ import annotations

import contextlib
import http
import json
import os
import secrets
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from .web import TEAM_ID, FakeSlack

APP_ID = "A0FAKEAPP"


class FakeSocketMode:
    """Slack's Socket Mode endpoint on 127.0.0.1; ``slack`` is the FakeSlack that hands out its URLs."""

    def __init__(
        self, slack: FakeSlack | None = None, *, app_id: str = APP_ID, ping_interval: float = 0.25
    ) -> None:
        self.slack = slack
        self.app_id = app_id
        self.ping_interval = ping_interval
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self._connections: list[ServerConnection] = []
        self._handler_threads: list[threading.Thread] = []
        self._acks: list[dict[str, Any]] = []
        self._sent: list[dict[str, Any]] = []
        self.connections_opened = 0
        self.rejected_handshakes = 0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        # Slack pings its clients too. A short interval matters here: slack-sdk's built-in
        # client holds its receive lock in a recv() with a 3 s timeout, and close() or a
        # reconnect waits for that lock; a frame from the server releases it at once.
        self._server = serve(
            self._serve_connection,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            ping_interval=self.ping_interval,
            ping_timeout=10,
            close_timeout=1,
            compression=None,
        )
        self._port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeSocketMode", daemon=True)
        self._thread.start()
        if self.slack is not None:
            self.slack.socket_mode = self
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self.slack is not None and self.slack.socket_mode is self:
            self.slack.socket_mode = None
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.drop_connections(code=1001, reason="server shutting down")
        with self._cond:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(timeout=5)
        _close_shutdown_pipe(self._server)
        self._server = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSocketMode is not started")
        return self._port

    def issue_url(self) -> str:
        """A fresh single-use URL, as ``apps.connections.open`` returns.

        ``ws://``: slack-sdk's built-in client speaks plain TCP to any port but 443 whatever the
        scheme says; the other Socket Mode clients would try TLS on ``wss://``.
        """
        ticket = secrets.token_hex(8)
        with self._cond:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- server side ---------------------------------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        ticket = parse_qs(urlsplit(request.path).query).get("ticket", [""])[0]
        with self._cond:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return None
            self.rejected_handshakes += 1
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")

    def _serve_connection(self, connection: ServerConnection) -> None:
        with self._cond:
            self._connections.append(connection)
            self._handler_threads.append(threading.current_thread())
            self.connections_opened += 1
            self._cond.notify_all()
        try:
            connection.send(json.dumps(self._hello()))
            for raw in connection:
                self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._connections.remove(connection)
                self._cond.notify_all()

    def _receive(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict) and "envelope_id" in message:
            with self._cond:
                self._acks.append({**message, "_received_at": time.monotonic()})
                self._cond.notify_all()

    def _hello(self) -> dict[str, Any]:
        with self._cond:
            count = len(self._connections)
        return {
            "type": "hello",
            "num_connections": count,
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }

    # -- test side -----------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        with self._cond:
            return len(self._connections)

    def wait_for_connection(self, timeout: float = 5.0, *, opened: int = 1) -> None:
        """Block until ``opened`` connections were made in all and the client is settled on one.

        Settled means exactly one connection is open: after a ``disconnect`` notice slack-sdk's
        built-in client opens the new connection first and closes the old one only when its
        reader lets go of the old socket; envelopes sent in between wait unread.
        """

        def settled() -> bool:
            return self.connections_opened >= opened and len(self._connections) == 1

        with self._cond:
            if not self._cond.wait_for(settled, timeout=timeout):
                raise TimeoutError(
                    f"not settled on connection #{opened} within {timeout}s "
                    f"({self.connections_opened} opened, {len(self._connections)} open)"
                )

    def send_envelope(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Send one envelope to the newest connection; returns its ``envelope_id``."""
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason or "")
        self._send_to_newest(envelope)
        return envelope_id

    def send_block_actions(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        channel: str = "C0FAKE",
        message_ts: str | None = None,
        block_id: str | None = None,
        user_name: str | None = None,
        accepts_response_payload: bool = False,
    ) -> str:
        """A button click by ``user_id``, as an ``interactive`` envelope; returns its ``envelope_id``.

        When the linked FakeSlack holds the message at (``channel``, ``message_ts``), the payload
        carries that message and the clicked button's block_id and text, as Slack's does.
        """
        payload = self.block_actions_payload(
            user_id, action_id, value, channel=channel, message_ts=message_ts, block_id=block_id,
            user_name=user_name,
        )  # fmt: skip
        return self.send_envelope("interactive", payload, accepts_response_payload=accepts_response_payload)

    def block_actions_payload(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        channel: str = "C0FAKE",
        message_ts: str | None = None,
        block_id: str | None = None,
        user_name: str | None = None,
    ) -> dict[str, Any]:
        """The ``block_actions`` payload of a click (also what HTTP mode posts, form-encoded)."""
        message = self._message_as_shown(channel, message_ts)
        button = _find_button(message.get("blocks") or [], action_id)
        name = user_name or (self.slack.user_name(user_id) if self.slack else None) or user_id.lower()
        action_ts = f"{time.time():.6f}"
        return {
            "type": "block_actions",
            "user": {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID},
            "api_app_id": self.app_id,
            "token": "fake-verification-token",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().int % 10**12}.{secrets.token_hex(16)}",
            "team": {"id": TEAM_ID, "domain": "fake-workspace"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel.lower()},
            "message": message,
            "state": {"values": {}},
            "response_url": self._response_url(),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id or button.get("block_id") or "fake-block",
                    "text": button.get("text") or {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    **({"style": button["style"]} if "style" in button else {}),
                    "action_ts": action_ts,
                }
            ],
        }

    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's notice that a connection will close; the client is expected to reconnect."""
        self._send_to_newest({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-fake"},
        })  # fmt: skip

    def drop_connections(self, *, code: int = 1011, reason: str = "") -> None:
        """Close every open connection from the server side."""
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            connection.close(code=code, reason=reason)

    def acks(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(a) for a in self._acks]

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The client's acknowledgement of ``envelope_id`` (with ``payload`` if it sent one)."""

        def found() -> dict[str, Any] | None:
            return next((a for a in self._acks if a.get("envelope_id") == envelope_id), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout=timeout):
                raise TimeoutError(f"envelope {envelope_id} was not acknowledged within {timeout}s")
            return dict(found() or {})

    def sent(self) -> list[dict[str, Any]]:
        """Every envelope or notice sent to clients (hello messages aside), in order."""
        with self._cond:
            return list(self._sent)

    # -- helpers -------------------------------------------------------------------------------

    def _send_to_newest(self, message: dict[str, Any]) -> None:
        with self._cond:
            if not self._connections:
                raise RuntimeError("no Socket Mode client is connected")
            connection = self._connections[-1]
            self._sent.append(message)
        connection.send(json.dumps(message))

    def _message_as_shown(self, channel: str, message_ts: str | None) -> dict[str, Any]:
        shown = self.slack.shown_message(channel, message_ts) if (self.slack and message_ts) else None
        ts = message_ts or f"{time.time():.6f}"
        return shown or {"type": "message", "ts": ts, "text": "", "blocks": []}

    def _response_url(self) -> str:
        base = self.slack.url if self.slack is not None else "http://127.0.0.1:9"
        return f"{base}/response_url/{TEAM_ID}/{uuid.uuid4().hex}"


def _find_button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    for block in blocks:
        elements = block.get("elements") or ([block["accessory"]] if "accessory" in block else [])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return {**element, "block_id": block.get("block_id")}
    return {}


def _close_shutdown_pipe(server: Server) -> None:
    # websockets' sync Server opens a self-pipe for shutdown() and never closes it (15.x).
    for name in ("shutdown_watcher", "shutdown_notifier"):
        fd = getattr(server, name, None)
        if isinstance(fd, int):
            with contextlib.suppress(OSError):
                os.close(fd)
