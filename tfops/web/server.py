"""uvicorn inside the daemon: one server on a daemon thread, started and stopped by `tfops serve`.

The daemon owns the process: its signal handlers and its logging set-up. So uvicorn gets
`log_config=None` (its loggers propagate to tfops' handlers), no access log (the daemon logs what
matters itself), and no signal handlers (`capture_signals` is a no-op here; uvicorn installs none
off the main thread anyway, but that is an accident of where it runs, not a promise).

The listening socket is bound in `start()`, on the caller's thread, so "address in use" and bad TLS
files are raised right there with a clear message instead of ending uvicorn's thread quietly
(uvicorn answers a bind failure with `sys.exit`, which a thread swallows). It also gives the real
port at once when port 0 was asked.

Slow clients cannot hold connections: each must send a whole request head within `head_timeout`
seconds of opening (or of its previous response), the app refuses bodies that trickle
(`create_app(body_timeout=...)`, 408), and beyond `MAX_CONNECTIONS` uvicorn answers 503. With TLS
the head deadline starts after the handshake, which asyncio bounds at 60 s.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from tfops.errors import TerminalError

log = logging.getLogger(__name__)

# Clients are Git hosts, Slack, Prometheus and scripts: a few connections at a time.
MAX_CONNECTIONS = 200
# A connection must send a whole request head this soon after it opens (or after its previous
# response): otherwise it is closed, so idle or trickling connections cannot pile up.
HEAD_TIMEOUT = 10.0
_NO_PASSPHRASE = "\x00tfops-never-prompts"

_BACKLOG = 128


class WebServerError(TerminalError):
    """The HTTP server could not start (address in use, bad TLS files, app start-up failed)."""

    hint = "check http.listen, http.tls_cert and http.tls_key in the configuration"


def parse_listen(listen: str) -> tuple[str, int]:
    """`"127.0.0.1:8080"`, `"[::1]:8080"` or `"localhost:0"` → (host, port); ValueError otherwise."""
    text = listen.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"bad listen address {listen!r}: write an IPv6 address as [::1]:8080")
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"bad listen address {listen!r}: put an IPv6 address in brackets, as [::1]:8080")
    if not host:
        raise ValueError(f"bad listen address {listen!r}: expected HOST:PORT, such as 127.0.0.1:8080")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"bad listen address {listen!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


@dataclass(frozen=True)
class HttpOptions:
    """Where and how to listen. Port 0 picks a free port (tests); TLS needs both cert and key."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not from 0 to 65535")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key file, or neither")

    @classmethod
    def from_listen(
        cls, listen: str, *, tls_cert: Path | None = None, tls_key: Path | None = None
    ) -> HttpOptions:
        host, port = parse_listen(listen)
        return cls(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


class WebServer:
    """Serve an ASGI app with uvicorn on a daemon thread until `stop()`."""

    def __init__(self, app: ASGIApp, options: HttpOptions, *, head_timeout: float = HEAD_TIMEOUT) -> None:
        self.app = app
        self.options = options
        self.head_timeout = head_timeout
        self._server: _EmbeddedServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the real one when port 0 was asked)."""
        if self._port is None:
            raise RuntimeError("the HTTP server has not been started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"{self.options.scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Listen and serve; returns once requests are being accepted. WebServerError if it cannot."""
        if self._thread is not None:
            raise RuntimeError("the HTTP server was already started")
        sock = _listening_socket(self.options.host, self.options.port)
        try:
            config = self._config()
            server = _EmbeddedServer(config)
        except BaseException:
            sock.close()
            raise
        self._server, self._port = server, sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="tfops-http", daemon=True
        )
        self._thread.start()
        if not server.ready.wait(timeout) or not server.started:
            self.stop(timeout=2.0)
            reason = "did not start in time" if self._failure is None else "failed while starting"
            raise WebServerError(
                f"the HTTP server on {self.options.host}:{self._port} {reason}"
            ) from self._failure
        log.info("HTTP server listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop accepting, let requests in flight finish, then end the thread. True if it ended in time."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return True
        # Requests still running after most of the timeout are cancelled; the rest is for the app's
        # shutdown hooks. uvicorn notices `should_exit` on its next tick (every 0.1 s).
        server.config.timeout_graceful_shutdown = max(0.0, timeout * 0.7)  # type: ignore[assignment]
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(1.0)
        if thread.is_alive():
            log.warning("the HTTP server did not stop within %.1fs; leaving its daemon thread", timeout)
            return False
        return True

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _config(self) -> uvicorn.Config:
        tls = self.options
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",  # an app whose start-up fails must fail `start()`, not serve half-ready
            http=guarded_h11(self.head_timeout),  # pinned to h11, plus a deadline for each request head
            limit_concurrency=MAX_CONNECTIONS,  # beyond it 503: descriptors stay for git and Terraform
            loop="asyncio",
            ws="none",
            server_header=False,
            ssl_certfile=str(tls.tls_cert) if tls.tls_cert else None,
            ssl_keyfile=str(tls.tls_key) if tls.tls_key else None,
            # An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
            ssl_keyfile_password=_NO_PASSPHRASE if tls.tls_key else None,
        )
        # Loaded here, not on the server thread: a bad certificate or key is raised to the caller.
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            reason = _reason(exc)
            if tls.tls_key is not None and _is_encrypted_key(tls.tls_key):
                reason = "the key is encrypted, and tfops never asks for a passphrase"
            raise WebServerError(
                f"cannot load the TLS certificate {tls.tls_cert} and key {tls.tls_key}: {reason}",
                hint="http.tls_cert must be a PEM certificate (chain), http.tls_key its unencrypted PEM key",
            ) from None
        return config

    def _serve(self, server: _EmbeddedServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit included: uvicorn exits that way when start-up fails
            self._failure = exc
            log.error("the HTTP server stopped on an error: %s", _reason(exc), exc_info=exc)
        finally:
            sock.close()
            server.ready.set()


def guarded_h11(head_timeout: float) -> type[H11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout": head_timeout})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (a slowloris guard).

    uvicorn's own keep-alive timeout only starts after a first response and stops as soon as a
    byte arrives; this one also covers a connection that never completes a request head.
    """

    head_timeout = HEAD_TIMEOUT

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline(self.cycle)

    def on_response_complete(self) -> None:
        # Taken before uvicorn handles a pipelined request that may already be buffered: that
        # request replaces the cycle, so the deadline must not wait for it to end.
        answered = self.cycle
        super().on_response_complete()
        self._arm_head_deadline(answered)

    def connection_lost(self, exc: Exception | None) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_head_deadline(self, waiting_after: object) -> None:
        """Close the connection in `head_timeout` seconds unless a request head replaces `waiting_after`."""
        previous = getattr(self, "_head_deadline", None)
        if previous is not None:
            previous.cancel()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._drop_if_no_head, waiting_after)

    def _drop_if_no_head(self, waiting_after: object) -> None:
        if self.cycle is waiting_after and not self.transport.is_closing():
            self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server that tells when it is accepting and never touches signal handlers."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise WebServerError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted daemon rebind while old connections sit in TIME_WAIT; a live listener
        # on the port still makes bind fail on Linux, which is what we want.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        hint = "is another process (or another tfops) listening there? change http.listen or stop it"
        raise WebServerError(f"cannot listen on {host}:{port}: {_reason(exc)}", hint=hint) from None
    return sock


def _is_encrypted_key(path: Path) -> bool:
    """Whether a PEM key is passphrase-protected (PKCS#8 "ENCRYPTED PRIVATE KEY" or legacy Proc-Type)."""
    try:
        with path.open("rb") as key:
            head = key.read(4096)
    except OSError:
        return False
    return b"ENCRYPTED PRIVATE KEY" in head or b"Proc-Type: 4,ENCRYPTED" in head


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
