"""Who may read the status page (tfops/web/ui.py), and the signed session cookie of the login form.

A request is let in, in this order, by:

1. `Authorization: Bearer TOKEN` with one of the API's tokens (a wrong one is refused with 401,
   whatever else the request carries);
2. the `tfops_session` cookie the login form set: `base64(payload).base64(HMAC-SHA256)` under a
   key only tfops holds (`http.ui.session_key_file`, by default `<data_dir>/ui-session.key`, 32
   random bytes created with mode 0600). The payload names the token and carries a digest of it,
   so a session ends when its token is removed or changed, and an expiry (`http.ui.session_ttl`);
3. the header an auth proxy sets (`http.ui.proxy_user_header`, e.g. `X-Forwarded-User`), only
   when configured: a client that reaches tfops directly could set it to anything;
4. nothing at all, when no token and no proxy header is configured and `http.listen` is loopback
   (a person on the VM, or an SSH tunnel). On any other listen address the page is refused (403)
   with the reason, rather than shown to the network.

A browser that is not let in is sent to `/login?next=PATH` (303); other clients get 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import Request

from tfops.errors import TerminalError
from tfops.web.api import ApiToken, TokenTable

log = logging.getLogger(__name__)

COOKIE = "tfops_session"
KEY_BYTES = 32
_KEY_MODE = 0o600
_MAX_USER_CHARS = 200


class SessionKeyError(TerminalError):
    """The session key file cannot be read or created."""

    hint = "check http.ui.session_key_file (or the data directory): tfops must own it, mode 0600"


def load_session_key(path: Path) -> bytes:
    """The key in `path`, created (random, mode 0600) when the file does not exist yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SessionKeyError(f"cannot create the session key {path}: {exc.strerror}") from None
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise SessionKeyError(f"cannot read the session key {path}: {exc.strerror}") from None
    if len(key) < KEY_BYTES:
        raise SessionKeyError(f"the session key {path} holds {len(key)} bytes; it needs {KEY_BYTES} or more")
    return key


def is_loopback(host: str) -> bool:
    """Whether a listen host only accepts connections from this machine."""
    host = host.strip("[]").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")


@dataclass(frozen=True)
class Viewer:
    """Who is reading: a token's name, a proxy's user, or "local" on an open loopback page."""

    name: str
    via: str  # "token" | "session" | "proxy" | "loopback"


class NotAllowed(Exception):
    """The request may not see the page; `status` 401 (who are you?) or 403 (never here)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UiAccess:
    """The page's gate: tokens, session signing, the trusted proxy header, loopback openness."""

    def __init__(
        self,
        tokens: Sequence[ApiToken],
        key: bytes,
        *,
        loopback: bool,
        proxy_header: str | None = None,
        ttl: float = 12 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = {token.name: token for token in tokens}
        self._table = TokenTable(tokens) if tokens else None  # the API's lookup, one copy
        self._key = key
        self.proxy_header = proxy_header
        self.ttl = ttl
        self._clock = clock
        self.configured = bool(tokens) or proxy_header is not None
        self.loopback = loopback

    @property
    def has_tokens(self) -> bool:
        return bool(self._tokens)

    @property
    def refusal(self) -> str | None:
        """Why the page is never shown here, or None."""
        if self.configured or self.loopback:
            return None
        return (
            "the status page is off: http.listen is not a loopback address and no way to log in is "
            "configured; set api.tokens (then log in with a read token) or http.ui.proxy_user_header "
            "behind an auth proxy, or listen on 127.0.0.1"
        )

    def token(self, presented: str) -> ApiToken | None:
        """The token typed into the login form (compared with every one, in constant time)."""
        return self._table.find_secret(presented.encode("utf-8", "replace")) if self._table else None

    def viewer(self, request: Request) -> Viewer:
        """Who the request is from; NotAllowed when nobody the page may be shown to."""
        refusal = self.refusal
        if refusal is not None:
            raise NotAllowed(403, refusal)
        bearer = _bearer(request.headers.get("authorization"))
        if bearer is not None:
            token = self._table.find(bearer) if self._table else None
            if token is None:
                raise NotAllowed(401, "the bearer token is not valid")
            return Viewer(token.name, "token")
        cookie = request.cookies.get(COOKIE)
        if cookie:
            name = self.session_user(cookie)
            if name is not None:
                return Viewer(name, "session")
        if self.proxy_header is not None:
            user = (request.headers.get(self.proxy_header) or "").strip()
            if user:
                return Viewer(user[:_MAX_USER_CHARS], "proxy")
        if not self.configured:
            return Viewer("local", "loopback")
        raise NotAllowed(401, "log in with an API token")

    # -- the session cookie -------------------------------------------------------------------------

    def issue(self, token: ApiToken) -> str:
        payload = {"u": token.name, "exp": int(self._clock() + self.ttl), "k": self._binding(token)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def session_user(self, cookie: str) -> str | None:
        """The token name a valid, unexpired session cookie names; None for anything else."""
        body, dot, signature = cookie.partition(".")
        if not dot or not hmac.compare_digest(_b64(self._sign(body)), signature):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            name, expires, binding = str(payload["u"]), float(payload["exp"]), str(payload["k"])
        except (ValueError, KeyError, TypeError):
            return None
        token = self._tokens.get(name)
        if token is None or expires < self._clock() or not hmac.compare_digest(binding, self._binding(token)):
            return None
        return name

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, b"tfops-ui-session\0" + body.encode(), hashlib.sha256).digest()

    def _binding(self, token: ApiToken) -> str:
        # A digest of the token under the key: the cookie neither holds the token nor outlives it.
        return hmac.new(self._key, b"tfops-ui-token\0" + token.token.encode(), hashlib.sha256).hexdigest()[
            :32
        ]


def wants_html(request: Request) -> bool:
    """A browser navigating (sent to the login page) rather than a script (answered 401)."""
    return "text/html" in request.headers.get("accept", "")


def login_location(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a local path only (never `//host` or `https://…`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(char) < 0x20 for char in value):
        return "/"
    return value


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
