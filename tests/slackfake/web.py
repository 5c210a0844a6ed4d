"""A local stand-in for Slack's Web API that the real slack-sdk ``WebClient`` talks to.

Point the client at it with ``WebClient(base_url=fake.api_url, token=fake.bot_token)`` (the
trailing slash of ``api_url`` matters: slack-sdk joins method names with ``urljoin``).

What it is for: proving what tfops sends and how it copes with Slack's answers. It records every
request in order, keeps messages per channel so ``chat.update`` edits the right one, rejects what
Slack rejects with Slack's own error names (``invalid_blocks``, ``no_text``, ``msg_too_long``,
``msg_blocks_too_long``, ``message_not_found``, ``invalid_auth``...), and can be told to answer 429
with ``Retry-After`` or to be down for a while.

Where Slack is silent or undocumented the fake is deliberately the stricter of the plausible
behaviours (a ``thread_ts`` must name a message of that channel; the cumulative block-text budget
is 12,000 characters, the figure Slack's staff give, although rejections are reported near it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from slack_sdk import WebClient

DEFAULT_BOT_TOKEN = "xoxb-fake-bot-token"
DEFAULT_APP_TOKEN = "xapp-1-fake-app-token"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0FAKEBOT"
BOT_ID = "B0FAKEBOT"
WORKSPACE_URL = "https://fake-workspace.slack.com/"

# Slack's published Block Kit limits.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ID = 255
MAX_URL = 3000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
# chat.postMessage's documented ceiling for `text` and the undocumented one for all block text.
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCKS_TEXT = 12_000

_KNOWN_BLOCKS = {
    "section", "header", "divider", "context", "actions", "image",
    "rich_text", "markdown", "input", "file", "video", "context_actions",
}  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One request as the fake received it, with what it answered."""

    method: str  # "chat.postMessage"...; "upload" for an upload URL; "response_url" for one
    params: dict[str, Any]  # query string + JSON or form body; form values stay strings
    headers: dict[str, str]
    body: bytes
    status: int
    response: dict[str, Any] | None  # None when the connection was cut
    at: float  # time.monotonic() when it arrived

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")


@dataclass
class Message:
    """A message as the channel shows it now; ``history`` holds its earlier versions."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    user: str | None = None  # the recipient of an ephemeral message
    history: list[tuple[str | None, list[dict[str, Any]] | None]] = field(default_factory=list)

    @property
    def edits(self) -> int:
        return len(self.history)


@dataclass
class UploadedFile:
    id: str
    filename: str
    declared_length: int
    title: str | None = None
    content: bytes | None = None  # None until the upload URL received it
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False

    @property
    def text(self) -> str:
        return (self.content or b"").decode("utf-8", "replace")


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None
    method: str | None


class _Rejection(Exception):
    """Raised inside a method handler to answer ok:false; never leaves the fake."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.response = {"ok": False, "error": error, **extra}


# ---------------------------------------------------------------------------------------------
# Block Kit validation: pure functions returning Slack-style "[json-pointer:...]" messages.


def _too_long(value: str, limit: int, pointer: str) -> list[str]:
    if len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{pointer}]"]
    return []


def _text_object_errors(obj: Any, pointer: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"must provide an object [json-pointer:{pointer}]"]
    allowed = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
    if obj.get("type") not in allowed:
        return [f"must be one of {sorted(allowed)} [json-pointer:{pointer}/type]"]
    if not obj["text"]:
        return [f"must be more than 0 characters [json-pointer:{pointer}/text]"]
    return _too_long(obj["text"], limit, f"{pointer}/text")


def _plain_text_errors(obj: Any, pointer: str, limit: int) -> list[str]:
    return _text_object_errors(obj, pointer, limit, plain_only=True)


def _confirm_errors(confirm: Any, pointer: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [f"must provide an object [json-pointer:{pointer}]"]
    return [
        *_plain_text_errors(confirm.get("title"), f"{pointer}/title", MAX_CONFIRM_TITLE),
        *_text_object_errors(confirm.get("text"), f"{pointer}/text", MAX_CONFIRM_TEXT),
        *_plain_text_errors(confirm.get("confirm"), f"{pointer}/confirm", MAX_CONFIRM_BUTTON),
        *_plain_text_errors(confirm.get("deny"), f"{pointer}/deny", MAX_CONFIRM_BUTTON),
    ]


def _element_errors(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [f"must provide an object with a type [json-pointer:{pointer}]"]
    errors = _too_long(str(element.get("action_id", "")), MAX_ID, f"{pointer}/action_id")
    if element["type"] == "button":
        errors += _plain_text_errors(element.get("text"), f"{pointer}/text", MAX_BUTTON_TEXT)
        errors += _too_long(str(element.get("value", "")), MAX_BUTTON_VALUE, f"{pointer}/value")
        errors += _too_long(str(element.get("url", "")), MAX_URL, f"{pointer}/url")
        if element.get("style") not in (None, "primary", "danger"):
            errors.append(f"must be one of ['danger', 'primary'] [json-pointer:{pointer}/style]")
    if "confirm" in element:
        errors += _confirm_errors(element["confirm"], f"{pointer}/confirm")
    return errors


def _section_errors(block: dict[str, Any], pointer: str) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"must provide text or fields [json-pointer:{pointer}]"]
    errors: list[str] = []
    if "text" in block:
        errors += _text_object_errors(block["text"], f"{pointer}/text", MAX_SECTION_TEXT)
    if "fields" in block:
        fields = block["fields"]
        if not isinstance(fields, list) or not fields:
            return [*errors, f"must provide a non-empty array [json-pointer:{pointer}/fields]"]
        if len(fields) > MAX_SECTION_FIELDS:
            errors.append(f"no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:{pointer}/fields]")
        for i, item in enumerate(fields):
            errors += _text_object_errors(item, f"{pointer}/fields/{i}", MAX_FIELD_TEXT)
    if "accessory" in block:
        errors += _element_errors(block["accessory"], f"{pointer}/accessory")
    return errors


def _elements_errors(block: dict[str, Any], pointer: str, limit: int, check: Callable) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"must provide a non-empty array [json-pointer:{pointer}/elements]"]
    errors = []
    if len(elements) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:{pointer}/elements]")
    for i, element in enumerate(elements):
        errors += check(element, f"{pointer}/elements/{i}")
    return errors


def _context_element_errors(element: Any, pointer: str) -> list[str]:
    if isinstance(element, dict) and element.get("type") == "image":
        return []
    return _text_object_errors(element, pointer, MAX_SECTION_TEXT)


def _block_errors(block: Any, pointer: str) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in _KNOWN_BLOCKS:
        return [f"unsupported type [json-pointer:{pointer}/type]"]
    errors = _too_long(str(block.get("block_id", "")), MAX_ID, f"{pointer}/block_id")
    kind = block["type"]
    if kind == "section":
        errors += _section_errors(block, pointer)
    elif kind == "header":
        errors += _plain_text_errors(block.get("text"), f"{pointer}/text", MAX_HEADER_TEXT)
    elif kind == "context":
        errors += _elements_errors(block, pointer, MAX_CONTEXT_ELEMENTS, _context_element_errors)
    elif kind == "actions":
        errors += _elements_errors(block, pointer, MAX_ACTIONS_ELEMENTS, _element_errors)
    return errors


def block_errors(blocks: Any) -> list[str]:
    """Everything Slack would find wrong with ``blocks``, as its ``errors`` strings; [] when valid."""
    if not isinstance(blocks, list):
        return ["must provide an array [json-pointer:/blocks]"]
    errors = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    seen_ids: set[str] = set()
    for i, block in enumerate(blocks):
        errors += _block_errors(block, f"/blocks/{i}")
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if block_id is not None:
            if block_id in seen_ids:
                errors.append(f"duplicate block_id [json-pointer:/blocks/{i}/block_id]")
            seen_ids.add(block_id)
    return errors


def blocks_text_length(node: Any) -> int:
    """Characters of every ``text`` string inside the blocks: what Slack's cumulative budget counts."""
    if isinstance(node, list):
        return sum(blocks_text_length(item) for item in node)
    if isinstance(node, dict):
        return sum(
            len(value) if key == "text" and isinstance(value, str) else blocks_text_length(value)
            for key, value in node.items()
        )
    return 0


def _string_leaves(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
        stripped = node.lstrip()
        if stripped[:1] in ("[", "{"):  # form-encoded blocks and files arrive as JSON strings
            with contextlib.suppress(ValueError):
                yield from _string_leaves(json.loads(node))
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _string_leaves(value)
    elif isinstance(node, list):
        for item in node:
            yield from _string_leaves(item)
    elif node is not None:
        yield str(node)


# ---------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close so that a test ends with no thread of ours alive.
    daemon_threads = False
    block_on_close = True
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers in keep-alive
    timeout = 10

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: request lines would carry tokens in query strings into test output."""


class FakeSlack:
    """Slack's Web API on 127.0.0.1, for the real ``slack_sdk.WebClient``.

    ``users`` maps user id → name (or a dict of users.info fields); ``usergroups`` maps group id →
    member ids. A ``FakeSocketMode`` built with this fake answers ``apps.connections.open``.
    """

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        users: dict[str, str | dict[str, Any]] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        text_limit: int = MAX_MESSAGE_TEXT,
        blocks_text_limit: int = MAX_BLOCKS_TEXT,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.text_limit = text_limit
        self.blocks_text_limit = blocks_text_limit
        self.socket_mode: Any = None  # set by FakeSocketMode; has issue_url() -> str
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._cond = threading.Condition(threading.RLock())
        self._calls: list[Call] = []
        self._messages: list[Message] = []
        self._ephemerals: list[Message] = []
        self._files: dict[str, UploadedFile] = {}
        self._uploads: list[bytes] = []
        self._failures: list[_Failure] = []
        self._down_until = 0.0
        self._down_how = "503"
        self._refused_blocks: tuple[str, str] | None = None
        self._seq = 0
        self._ts_base = int(time.time())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._started = False
        self._refusal: threading.Timer | None = None
        for user_id, info in (users or {}).items():
            self.add_user(user_id, info)
        for group_id, members in (usergroups or {}).items():
            self.set_usergroup(group_id, members)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._listen(0)
        self._started = True
        return self

    def stop(self) -> None:
        self._cancel_refusal()
        self._close_listener()
        self._started = False

    def _listen(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler)
        server.fake = self
        self._server, self._port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def _cancel_refusal(self) -> None:
        with self._cond:
            refusal, self._refusal = self._refusal, None
        if refusal is not None:
            refusal.cancel()
            refusal.join(timeout=5)

    def _reopen(self) -> None:
        with self._cond:
            if self._refusal is not None and self._server is None and self._started:
                self._listen(self._port)  # SO_REUSEADDR: the same port, so clients' URLs stay valid

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._started:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for WebClient; the trailing slash is required."""
        return self.url + "/api/"

    def web_client(self, **kwargs: Any) -> WebClient:
        """A real ``slack_sdk.WebClient`` pointed at this fake with the bot token."""
        kwargs.setdefault("token", self.bot_token)
        kwargs.setdefault("timeout", 5)
        return WebClient(base_url=self.api_url, **kwargs)

    # -- configuration and scripting ---------------------------------------------------------

    def add_user(self, user_id: str, info: str | dict[str, Any]) -> None:
        fields = {"name": info} if isinstance(info, str) else dict(info)
        name = fields.get("name", user_id.lower())
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": fields.get("real_name", name),
            "deleted": False,
            "is_bot": False,
            "profile": {"real_name": fields.get("real_name", name), "display_name": name},
        }
        user.update({k: v for k, v in fields.items() if k not in ("name", "real_name")})
        with self._cond:
            self._users[user_id] = user

    def user_name(self, user_id: str) -> str | None:
        with self._cond:
            user = self._users.get(user_id)
            return None if user is None else user["name"]

    def set_usergroup(self, group_id: str, members: list[str]) -> None:
        with self._cond:
            self._usergroups[group_id] = list(members)

    def fail_next(
        self, n: int = 1, *, status: int = 429, retry_after: int | None = 1, error: str | None = None,
        method: str | None = None,
    ) -> None:  # fmt: skip
        """Answer the next ``n`` requests (of ``method`` only, if given) with ``status``.

        429 carries ``Retry-After: retry_after`` (an integer: slack-sdk parses it with ``int``) and
        error ``ratelimited``; other statuses carry ``error`` (default ``fatal_error``).
        """
        default_error = "ratelimited" if status == 429 else "fatal_error"
        failure = _Failure(status, error or default_error, retry_after if status == 429 else None, method)
        with self._cond:
            self._failures.extend([failure] * n)

    def go_down(self, seconds: float, *, how: str = "503") -> None:
        """Fail every request for ``seconds``.

        ``"503"`` answers 503 (recorded); ``"reset"`` reads the request, then resets the connection
        (recorded with status 0); ``"refuse"`` stops listening, so connections are refused (nothing
        to record), and listens again on the same port afterwards.
        """
        if how not in ("503", "reset", "refuse"):
            raise ValueError("how must be '503', 'reset' or 'refuse'")
        if how == "refuse":
            self._cancel_refusal()
            self._close_listener()
            with self._cond:
                self._refusal = threading.Timer(seconds, self._reopen)
                self._refusal.daemon = True
                self._refusal.start()
            return
        with self._cond:
            self._down_until = time.monotonic() + seconds
            self._down_how = how

    def refuse_blocks_containing(self, needle: str, *, error: str = "invalid_blocks") -> None:
        """From now on, refuse every message whose blocks mention ``needle`` with ``error``.

        A payload Slack refuses whatever the retry: a message without blocks (text only) still
        goes through, as it does on Slack when only the blocks are at fault.
        """
        with self._cond:
            self._refused_blocks = (needle, error)

    def come_back(self) -> None:
        """End any outage now and forget scripted failures."""
        with self._cond:
            self._down_until = 0.0
            self._failures.clear()
            refusing = self._refusal is not None
        if refusing:
            self._reopen()
            self._cancel_refusal()

    @property
    def is_down(self) -> bool:
        with self._cond:
            return time.monotonic() < self._down_until or self._server is None

    # -- inspection ----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every request received (answered or refused), in order; only ``method``'s if given."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for_calls(
        self, method: str, count: int = 1, timeout: float = 5.0, *, ok: bool = True
    ) -> list[Call]:
        """Block until ``count`` calls of ``method`` (successful ones, unless ``ok=False``) arrived."""

        def matching() -> list[Call]:
            return [c for c in self._calls if c.method == method and (c.ok or not ok)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"{len(matching())} of {count} {method} calls within {timeout}s")
            return matching()

    def messages(self, channel: str | None = None) -> list[Message]:
        """Messages as they stand now, in posting order (thread replies included)."""
        with self._cond:
            return [copy.deepcopy(m) for m in self._messages if channel is None or m.channel == channel]

    def message(self, channel: str, ts: str) -> Message | None:
        with self._cond:
            found = self._find_message(channel, ts)
            return None if found is None else copy.deepcopy(found)

    def shown_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message at ``ts`` as Slack shows it in API answers and interaction payloads."""
        with self._cond:
            found = self._find_message(channel, ts)
            return None if found is None else self._public_message(found)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Replies in the thread under ``ts``."""
        return [m for m in self.messages(channel) if m.thread_ts == ts]

    def ephemerals(self, channel: str | None = None) -> list[Message]:
        with self._cond:
            return [copy.deepcopy(m) for m in self._ephemerals if channel is None or m.channel == channel]

    def files(self, channel: str | None = None) -> list[UploadedFile]:
        """Files whose upload was completed (shared to ``channel`` if given)."""
        with self._cond:
            return [
                copy.deepcopy(f)
                for f in self._files.values()
                if f.completed and (channel is None or f.channel == channel)
            ]

    def all_text(self) -> str:
        """Everything ever sent to the fake, raw and decoded, to grep for a secret that must not leak.

        Covers bodies (raw, URL-decoded, and every JSON string leaf, so escaping cannot hide a
        value), query strings, uploaded file contents and headers other than Authorization.
        """
        with self._cond:
            calls = list(self._calls)
            uploads = list(self._uploads)
        parts: list[str] = []
        for call in calls:
            raw = call.body.decode("utf-8", "replace")
            parts += [raw, unquote_plus(raw), *_string_leaves(call.params)]
            parts += [f"{k}: {v}" for k, v in call.headers.items() if k.lower() != "authorization"]
        parts += [u.decode("utf-8", "replace") for u in uploads]
        return "\n".join(parts)

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        arrived = time.monotonic()
        split = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = dict(request.headers.items())
        method, route, target = _route(split.path)
        params = _parse_params(split.query, body, headers.get("Content-Type", ""), raw=route == "upload")

        outage = self._take_outage_or_failure(method)
        if outage == "reset":
            self._record(Call(method, params, headers, body, 0, None, arrived))
            _reset_connection(request)
            return
        extra_headers: dict[str, str] = {}
        if isinstance(outage, _Failure):
            status, response = outage.status, {"ok": False, "error": outage.error}
            if outage.retry_after is not None:
                extra_headers["Retry-After"] = str(outage.retry_after)
        else:
            status, response = self._answer(route, target, params, headers, body)
        self._record(Call(method, params, headers, body, status, response, arrived))
        _respond(request, status, response, extra_headers, plain=route == "upload" and status == 200)

    def _take_outage_or_failure(self, method: str) -> str | _Failure | None:
        with self._cond:
            if time.monotonic() < self._down_until:
                if self._down_how == "reset":
                    return "reset"
                return _Failure(503, "service_unavailable", None, None)
            for i, failure in enumerate(self._failures):
                if failure.method in (None, method):
                    return self._failures.pop(i)
            return None

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _answer(
        self, route: str, target: str, params: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if route == "upload":
            return self._receive_upload(target, body)
        if route == "response_url":
            return 200, {"ok": True}
        handler = _METHODS.get(target) if route == "api" else None
        if handler is None:
            return (200, {"ok": False, "error": "unknown_method"}) if route == "api" else (404, {"ok": False})
        try:
            self._check_token(target, params, headers)
            with self._cond:
                return 200, {"ok": True, **handler(self, params)}
        except _Rejection as rejection:
            return 200, rejection.response
        except Exception as exc:  # noqa: BLE001 - malformed input must be answered and recorded, not dropped
            return 500, {"ok": False, "error": "fake_internal_error", "detail": repr(exc)}

    def _check_token(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token")
        if not token:
            raise _Rejection("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise _Rejection("invalid_auth")
        needs_app_token = method == "apps.connections.open"
        if method != "auth.test" and (token == self.app_token) != needs_app_token:
            raise _Rejection("not_allowed_token_type")

    def _receive_upload(self, file_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self._uploads.append(body)
            upload = self._files.get(file_id)
            if upload is None:
                return 404, {"ok": False, "error": "file_not_found"}
            upload.content = body
        return 200, {"ok": True, "text": f"OK - {len(body)}"}

    # -- state helpers (called with the lock held) -------------------------------------------

    def _next_ts(self) -> str:
        self._seq += 1
        return f"{self._ts_base}.{self._seq:06d}"

    def _find_message(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self._messages if m.channel == channel and m.ts == ts), None)

    def _require_thread(self, channel: str, thread_ts: str | None) -> None:
        if thread_ts and self._find_message(channel, thread_ts) is None:
            raise _Rejection("thread_not_found")

    def _validated_content(self, params: dict[str, Any], *, required: bool = True) -> tuple[Any, Any]:
        text, blocks = params.get("text"), params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise _Rejection("invalid_blocks_format") from None
        if required and not text and not blocks:
            raise _Rejection("no_text")
        if blocks and self._refused_blocks and self._refused_blocks[0] in json.dumps(blocks):
            raise _Rejection(self._refused_blocks[1])
        if blocks is not None:
            errors = block_errors(blocks)
            if errors:
                raise _Rejection(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
            if blocks_text_length(blocks) > self.blocks_text_limit:
                raise _Rejection("msg_blocks_too_long")
        if text is not None and len(str(text)) > self.text_limit:
            raise _Rejection("msg_too_long")
        return text, blocks

    def _public_message(self, message: Message) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": message.ts,
            "text": message.text or "",
            "team": TEAM_ID,
        }
        if message.blocks is not None:
            shown["blocks"] = copy.deepcopy(message.blocks)
        if message.thread_ts:
            shown["thread_ts"] = message.thread_ts
        return shown


def _channel(params: dict[str, Any], key: str = "channel") -> str:
    channel = params.get(key)
    if not channel:
        raise _Rejection("channel_not_found")
    return str(channel)


def _auth_test(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": WORKSPACE_URL,
        "team": "Fake Workspace",
        "user": "tfops",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def _post_message(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    text, blocks = fake._validated_content(params)
    thread_ts = params.get("thread_ts") or None
    fake._require_thread(channel, thread_ts)
    message = Message(channel, fake._next_ts(), text, copy.deepcopy(blocks), thread_ts)
    fake._messages.append(message)
    return {"channel": channel, "ts": message.ts, "message": fake._public_message(message)}


def _update(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    message = fake._find_message(channel, str(params.get("ts") or ""))
    if message is None:
        raise _Rejection("message_not_found")
    text, blocks = fake._validated_content(params)
    message.history.append((message.text, copy.deepcopy(message.blocks)))
    if text is not None:
        message.text = text
    if blocks is not None:  # Slack keeps the old blocks when an update omits them
        message.blocks = copy.deepcopy(blocks)
    return {
        "channel": channel,
        "ts": message.ts,
        "text": message.text or "",
        "message": fake._public_message(message),
    }


def _post_ephemeral(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    user = params.get("user")
    if not user:
        raise _Rejection("user_not_in_channel")
    text, blocks = fake._validated_content(params)
    thread_ts = params.get("thread_ts") or None
    message = Message(channel, fake._next_ts(), text, copy.deepcopy(blocks), thread_ts, user=str(user))
    fake._ephemerals.append(message)
    return {"message_ts": message.ts}


def _get_permalink(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    ts = str(params.get("message_ts") or "")
    if fake._find_message(channel, ts) is None:
        raise _Rejection("message_not_found")
    permalink = f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}"
    return {"channel": channel, "permalink": permalink}


def _usergroup_members(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    members = fake._usergroups.get(str(params.get("usergroup") or ""))
    if members is None:
        raise _Rejection("no_such_subteam")
    return {"users": list(members)}


def _user_info(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    user = fake._users.get(str(params.get("user") or ""))
    if user is None:
        raise _Rejection("user_not_found")
    return {"user": copy.deepcopy(user)}


def _get_upload_url(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    filename = params.get("filename")
    try:
        length = int(params.get("length", ""))
    except ValueError:
        length = 0
    if not filename or length <= 0:
        raise _Rejection("invalid_arguments")
    file_id = f"F{fake._seq + 1:08d}"
    fake._seq += 1
    fake._files[file_id] = UploadedFile(file_id, str(filename), length)
    return {"upload_url": f"{fake.url}/upload/v1/{file_id}", "file_id": file_id}


def _complete_upload(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    try:
        requested = json.loads(params.get("files") or "[]")
    except ValueError:
        raise _Rejection("invalid_arguments") from None
    channel = params.get("channel_id") or params.get("channels") or None
    thread_ts = params.get("thread_ts") or None
    if thread_ts and not channel:
        raise _Rejection("invalid_arguments")
    if channel:
        fake._require_thread(str(channel), thread_ts)
    uploads = [fake._files.get(str(item.get("id"))) for item in requested]
    if not uploads or any(u is None or u.content is None for u in uploads):
        raise _Rejection("file_not_found")
    shown = []
    for item, upload in zip(requested, uploads, strict=True):
        assert upload is not None
        upload.title = item.get("title") or upload.filename
        upload.channel, upload.thread_ts = channel, thread_ts
        upload.initial_comment = params.get("initial_comment")
        upload.completed = True
        shown.append({
            "id": upload.id, "name": upload.filename, "title": upload.title,
            "size": len(upload.content or b""),
            "permalink": f"{WORKSPACE_URL}files/{BOT_USER_ID}/{upload.id}/{upload.filename}",
        })  # fmt: skip
    return {"files": shown}


def _connections_open(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    if fake.socket_mode is None:
        raise _Rejection("socket_mode_not_enabled")  # the fake's own name: no FakeSocketMode
    return {"url": fake.socket_mode.issue_url()}


_METHODS: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "chat.getPermalink": _get_permalink,
    "usergroups.users.list": _usergroup_members,
    "users.info": _user_info,
    "files.getUploadURLExternal": _get_upload_url,
    "files.completeUploadExternal": _complete_upload,
    "apps.connections.open": _connections_open,
}


# ---------------------------------------------------------------------------------------------
# HTTP plumbing.


def _route(path: str) -> tuple[str, str, str]:
    """(method name as recorded, route kind, its target) for a request path."""
    for prefix, route in (("/api/", "api"), ("/upload/v1/", "upload"), ("/response_url/", "response_url")):
        if path.startswith(prefix):
            target = path.removeprefix(prefix)
            return (target if route == "api" else route), route, target
    return path, "unknown", path


def _parse_params(query: str, body: bytes, content_type: str, *, raw: bool) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if raw:  # an upload URL gets the file's bytes, whatever the Content-Type says
        return params
    if "application/json" in content_type:
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            return params
        return {**params, **parsed} if isinstance(parsed, dict) else params
    if "application/x-www-form-urlencoded" in content_type:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _respond(
    request: _Handler, status: int, response: dict[str, Any], extra_headers: dict[str, str], *, plain: bool
) -> None:
    payload = response["text"].encode() if plain else json.dumps(response).encode()
    request.send_response(status)
    content_type = "text/plain" if plain else "application/json"
    request.send_header("Content-Type", f"{content_type}; charset=utf-8")
    request.send_header("Content-Length", str(len(payload)))
    for name, value in extra_headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(payload)


def _reset_connection(request: _Handler) -> None:
    # Linger 0 makes close() send RST: the client sees a reset or "closed without response".
    request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.close_connection = True
