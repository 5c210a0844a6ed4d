"""The HTTP server's guards against slow and greedy clients, over raw sockets to a real uvicorn.

The server here runs with deadlines under half a second, so a guard that works shows at once;
uvicorn's own keep-alive timeout (5 s) is far longer, so a close that comes this soon is ours.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pty
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Request

from tfops.web import HttpOptions, WebServer, create_app

DEADLINE = 0.4  # the head and body deadlines of the server under test, in seconds
CAP = 1024
SOON = DEADLINE + 2.0  # closed by then, or the guard did not fire (uvicorn's own timeout is 5 s)
SLOW_ROUTE_SECONDS = 2 * DEADLINE


def echo_router() -> APIRouter:
    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(SLOW_ROUTE_SECONDS)
        return {"slow": "done"}

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return router


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    app = create_app([echo_router()], max_body=CAP, body_timeout=DEADLINE)
    with WebServer(app, HttpOptions(port=0), head_timeout=DEADLINE) as running:
        yield running


def connect(server: WebServer) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def read_response(conn: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(4096)
        assert chunk, f"closed before a whole response head: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(header(head, b"content-length"))
    while len(body) < length:
        chunk = conn.recv(4096)
        assert chunk, "closed before the whole response body"
        body += chunk
    return head + b"\r\n\r\n" + body


def header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} header in {head!r}")


def trickle(conn: socket.socket, data: bytes, *, every: float = 0.1) -> bool:
    """Send `data` a byte at a time; False as soon as the server has closed the connection."""
    for byte in data:
        try:
            conn.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return False
        time.sleep(every)
    return True


# --------------------------------------------------------------------------- request heads


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(server: WebServer) -> None:
    with connect(server) as conn:
        opened = time.monotonic()
        received = read_until_closed(conn)
        waited = time.monotonic() - opened

    assert received == b""
    assert DEADLINE * 0.8 <= waited < SOON


def test_a_partial_request_head_is_closed_after_the_head_timeout(server: WebServer) -> None:
    with connect(server) as conn:
        opened = time.monotonic()
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: tfops\r\n")
        received = read_until_closed(conn)
        waited = time.monotonic() - opened

    assert received == b""
    assert DEADLINE * 0.8 <= waited < SOON


def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off(server: WebServer) -> None:
    # Each byte would restart an idle timer; the deadline counts from the opening instead.
    endless_header = b"GET /ping HTTP/1.1\r\nX-Slow: " + b"a" * 100
    with connect(server) as conn:
        opened = time.monotonic()
        finished_sending = trickle(conn, endless_header)
        waited = time.monotonic() - opened

    assert not finished_sending
    assert waited < SOON


def test_a_keep_alive_connection_idle_after_a_response_is_closed(server: WebServer) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: tfops\r\n\r\n")
        response = read_response(conn)
        answered = time.monotonic()
        after = read_until_closed(conn)
        waited = time.monotonic() - answered

    assert response.startswith(b"HTTP/1.1 200 ")
    assert after == b""
    assert DEADLINE * 0.8 <= waited < SOON


def test_a_keep_alive_connection_serves_a_second_request_sent_in_time(server: WebServer) -> None:
    with connect(server) as conn:
        for _ in range(2):
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: tfops\r\n\r\n")
            response = read_response(conn)
            assert response.startswith(b"HTTP/1.1 200 ")
            time.sleep(DEADLINE / 2)


def test_a_pipelined_request_slower_than_the_head_timeout_is_answered(server: WebServer) -> None:
    # The second request is already buffered when the first response ends: it is being served,
    # not awaited, so the head deadline must not cut it off.
    with connect(server) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: tfops\r\n\r\nGET /slow HTTP/1.1\r\nHost: tfops\r\n\r\n")
        first = read_response(conn)
        second = read_response(conn)

    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 200 ")
    assert second.endswith(b'{"slow":"done"}')


# --------------------------------------------------------------------------- request bodies


def test_a_trickled_body_gets_408_and_the_connection_is_closed(server: WebServer) -> None:
    body = b"x" * 100
    with connect(server) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: tfops\r\nContent-Length: 100\r\n\r\n" + body[:10])
        started = time.monotonic()
        trickle(conn, body[10:])
        received = read_until_closed(conn)
        waited = time.monotonic() - started

    head, _, content = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert header(head, b"connection") == b"close"
    assert content == b'{"detail": "request body too slow"}'
    assert waited < SOON  # the whole trickle would take 9 s


def test_a_body_sent_in_time_reaches_the_route(server: WebServer) -> None:
    with connect(server) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: tfops\r\nContent-Length: 5\r\n\r\nhe")
        time.sleep(DEADLINE / 3)
        conn.sendall(b"llo")
        response = read_response(conn)

    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b'{"received":5}')


def test_an_oversized_content_length_gets_413_and_the_connection_is_closed(server: WebServer) -> None:
    with connect(server) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: tfops\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 100)
        response = read_response(conn)
        after = read_until_closed(conn)

    head = response.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 413 ")
    assert header(head, b"connection") == b"close"
    assert after == b""


# --------------------------------------------------------------------------- TLS keys

_START_WITH_KEY = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    os.setsid()
    # A session leader that opens a terminal makes it its controlling terminal: OpenSSL's
    # passphrase prompt would go there (it reads /dev/tty, not stdin).
    os.open(sys.argv[1], os.O_RDWR)

    from tfops.web import HttpOptions, WebServer, WebServerError, create_app

    options = HttpOptions(port=0, tls_cert=Path(sys.argv[2]), tls_key=Path(sys.argv[3]))
    started = time.monotonic()
    try:
        WebServer(create_app(), options).start()
    except WebServerError as exc:
        print(f"refused after {time.monotonic() - started:.2f}s: {exc}")
    else:
        print("started")
    """
)


def encrypted_key_pair(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(b"canary-passphrase")
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def test_an_encrypted_tls_key_fails_start_at_once_without_prompting(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    cert, key = encrypted_key_pair(tmp_path)
    terminal, terminal_side = pty.openpty()
    try:
        child = subprocess.run(
            [sys.executable, "-c", _START_WITH_KEY, os.ttyname(terminal_side), str(cert), str(key)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,  # without the guard OpenSSL waits on the terminal for a passphrase forever
        )
        prompted = select.select([terminal], [], [], 0)[0] and os.read(terminal, 1024)
    finally:
        os.close(terminal)
        os.close(terminal_side)

    assert child.returncode == 0, child.stderr
    assert not prompted
    assert child.stdout.startswith("refused after ")
    assert float(child.stdout.split()[2].rstrip("s:")) < 2.0
    assert "the key is encrypted" in child.stdout
    assert "canary-passphrase" not in child.stdout + child.stderr
