"""Slack's HTTP mode and the daemon's HTTP server, over real HTTP to uvicorn on a loopback port.

Signatures are computed here with hmac, independently of slack-sdk, the way Slack documents them.
The verifier's clock is a fake the tests move, so a stale timestamp needs no waiting.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from tfops.web import HttpOptions, WebServer, WebServerError, create_app, parse_listen, slack_router

SECRET = "canary-signing-secret-7f3a"
CAP = 64 * 1024
FORM = "application/x-www-form-urlencoded"

CLICK = {
    "type": "block_actions",
    "user": {"id": "U024BE7LH", "username": "alice", "team_id": "T0CAG"},
    "team": {"id": "T0CAG", "domain": "acme"},
    "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0INFRA"},
    "channel": {"id": "C0INFRA", "name": "infra"},
    "response_url": "https://hooks.slack.com/actions/T0CAG/1/canary-response-url",
    "trigger_id": "123.456.abc",
    "actions": [
        {
            "type": "button",
            "action_id": "tfops_approve",
            "block_id": "decision",
            "value": "run:42",
            "text": {"type": "plain_text", "text": "Approve ✓"},
            "action_ts": "1700000001.000200",
        }
    ],
}


@dataclass
class RecordingSink:
    """Collects what the route hands over; raises `refusal` instead when it is set."""

    received: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)
    refusal: Exception | None = None

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.received.append((payload, transport))


@dataclass
class FakeClock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    server: WebServer
    sink: RecordingSink
    clock: FakeClock
    client: httpx.Client


def failing_router() -> APIRouter:
    router = APIRouter()

    @router.post("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must stay on the server")

    return router


@pytest.fixture(scope="module")
def served_module() -> Iterator[Served]:
    sink, clock = RecordingSink(), FakeClock()
    app = create_app([slack_router(SECRET, sink, clock=clock), failing_router()], max_body=CAP)
    server = WebServer(app, HttpOptions(host="127.0.0.1", port=0))
    server.start()
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Served(server, sink, clock, client)
    assert server.stop(timeout=5.0)


@pytest.fixture
def served(served_module: Served) -> Served:
    served_module.sink.received.clear()
    served_module.sink.refusal = None
    served_module.clock.now = time.time()
    return served_module


def form_body(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def slack_headers(
    body: bytes, *, timestamp: int, secret: str = SECRET, content_type: str = FORM
) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }


def post_signed(served: Served, body: bytes, **header_options: Any) -> httpx.Response:
    headers = slack_headers(body, timestamp=int(served.clock.now), **header_options)
    return served.client.post("/slack/interactions", content=body, headers=headers)


# --------------------------------------------------------------------------- the route


def test_signed_click_is_acknowledged_empty_and_handed_to_the_sink_as_http(served: Served) -> None:
    response = post_signed(served, form_body(CLICK))

    assert response.status_code == 200
    assert response.content == b""
    assert served.sink.received == [(CLICK, "http")]


def test_content_type_with_charset_is_still_a_form(served: Served) -> None:
    response = post_signed(served, form_body(CLICK), content_type=f"{FORM}; charset=utf-8")

    assert response.status_code == 200
    assert served.sink.received == [(CLICK, "http")]


def test_tampered_body_is_refused_and_nothing_submitted(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    signed_body = form_body(CLICK)
    headers = slack_headers(signed_body, timestamp=int(served.clock.now))
    tampered = form_body({**CLICK, "user": {"id": "U0MALLORY", "username": "canary-body-mallory"}})

    response = served.client.post("/slack/interactions", content=tampered, headers=headers)

    assert response.status_code == 401
    assert served.sink.received == []
    assert "signature does not match" in caplog.text
    assert SECRET not in caplog.text and "canary-body-mallory" not in caplog.text
    assert headers["X-Slack-Signature"] not in caplog.text


def test_signature_made_with_another_secret_is_refused(served: Served) -> None:
    response = post_signed(served, form_body(CLICK), secret="someone-elses-secret")

    assert response.status_code == 401
    assert served.sink.received == []


def test_timestamp_six_minutes_old_is_refused_though_correctly_signed(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    body = form_body(CLICK)
    headers = slack_headers(body, timestamp=int(served.clock.now))
    served.clock.now += 6 * 60  # the same request, replayed six minutes later

    response = served.client.post("/slack/interactions", content=body, headers=headers)

    assert response.status_code == 401
    assert served.sink.received == []
    assert "outside the 300s window" in caplog.text


def test_timestamp_four_minutes_old_is_still_inside_the_window(served: Served) -> None:
    body = form_body(CLICK)
    headers = slack_headers(body, timestamp=int(served.clock.now))
    served.clock.now += 4 * 60

    response = served.client.post("/slack/interactions", content=body, headers=headers)

    assert response.status_code == 200
    assert served.sink.received == [(CLICK, "http")]


@pytest.mark.parametrize(
    "dropped, replaced",
    [
        (("X-Slack-Request-Timestamp", "X-Slack-Signature"), {}),
        (("X-Slack-Signature",), {}),
        (("X-Slack-Request-Timestamp",), {}),
        ((), {"X-Slack-Request-Timestamp": "yesterday"}),
    ],
    ids=["no-headers", "no-signature", "no-timestamp", "timestamp-not-a-number"],
)
def test_missing_or_unreadable_signature_headers_are_refused(
    served: Served, dropped: tuple[str, ...], replaced: dict[str, str]
) -> None:
    body = form_body(CLICK)
    headers = slack_headers(body, timestamp=int(served.clock.now))
    headers = {name: value for name, value in headers.items() if name not in dropped} | replaced

    response = served.client.post("/slack/interactions", content=body, headers=headers)

    assert response.status_code == 401
    assert served.sink.received == []


@pytest.mark.parametrize(
    "body, content_type",
    [
        (json.dumps({"payload": CLICK}).encode(), "application/json"),
        (form_body(CLICK), "text/plain"),
        (urlencode({"token": "x", "type": "block_actions"}).encode(), FORM),
        (urlencode({"payload": "{not json"}).encode(), FORM),
        (form_body(["a", "list"]), FORM),
        (form_body(CLICK) + b"&" + form_body(CLICK), FORM),
        (b"payload=%FF%FE", FORM),
    ],
    ids=[
        "json-body",
        "wrong-content-type",
        "no-payload",
        "payload-not-json",
        "payload-a-list",
        "two-payloads",
        "payload-not-utf8",
    ],
)
def test_signed_but_malformed_requests_are_refused_400(
    served: Served, body: bytes, content_type: str
) -> None:
    response = post_signed(served, body, content_type=content_type)

    assert response.status_code == 400
    assert response.json()["detail"]
    assert served.sink.received == []


def test_sink_that_raises_gives_503_and_the_server_keeps_serving(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.sink.refusal = RuntimeError("approval desk closed")

    refused = post_signed(served, form_body(CLICK))
    served.sink.refusal = None
    accepted = post_signed(served, form_body(CLICK))

    assert refused.status_code == 503
    assert "could not take a Slack block_actions interaction" in caplog.text
    assert "canary-response-url" not in caplog.text
    assert accepted.status_code == 200
    assert served.sink.received == [(CLICK, "http")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(
    str.strip
)  # h11 refuses padded values


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=600) | json_values.map(form_body),
    content_type=st.sampled_from([FORM, f"{FORM}; charset=utf-8", "application/json", ""]) | header_text,
    signed=st.booleans(),
    forged_timestamp=header_text,
    forged_signature=header_text,
)
def test_random_requests_never_crash_the_route_and_only_signed_objects_are_submitted(
    served_module: Served,
    body: bytes,
    content_type: str,
    signed: bool,
    forged_timestamp: str,
    forged_signature: str,
) -> None:
    served = served_module
    submitted_before = len(served.sink.received)
    served.clock.now = time.time()
    if signed:
        headers = slack_headers(body, timestamp=int(served.clock.now), content_type=content_type)
    else:
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": forged_timestamp,
            "X-Slack-Signature": forged_signature,
        }

    response = served.client.post("/slack/interactions", content=body, headers=headers)

    submitted = served.sink.received[submitted_before:]
    if not signed:
        assert (response.status_code, submitted) == (401, [])
    elif response.status_code == 200:
        assert [type(payload) for payload, _ in submitted] == [dict]
    elif not is_utf8(body):  # slack-sdk's verifier decodes the body first; Slack only sends UTF-8
        assert (response.status_code, submitted) == (401, [])
    else:
        assert (response.status_code, submitted) == (400, [])


def is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_empty_signing_secret_is_refused_when_building_the_route() -> None:
    with pytest.raises(ValueError, match="signing secret is empty"):
        slack_router("  ", RecordingSink())


# --------------------------------------------------------------------------- the app's guards


def test_declared_body_over_the_cap_is_refused_before_it_is_sent(served: Served) -> None:
    # Only the headers go out: a 413 that arrives now proves nothing waited for a gigabyte.
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=5.0) as conn:
        conn.sendall(
            b"POST /slack/interactions HTTP/1.1\r\nHost: tfops\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n"
        )
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]

    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert served.sink.received == []


def test_chunked_body_growing_over_the_cap_is_refused_413(served: Served) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4 * CAP // 4096):
            yield b"payload=" + b"x" * 4088

    response = served.client.post("/slack/interactions", content=chunks(), headers={"Content-Type": FORM})

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than {CAP} bytes"}
    assert served.sink.received == []


def test_body_just_under_the_cap_reaches_the_route(served: Served) -> None:
    padded = {**CLICK, "padding": "p" * (CAP - len(form_body(CLICK)) - 200)}
    body = form_body(padded)
    assert CAP - 200 < len(body) <= CAP

    response = post_signed(served, body)

    assert response.status_code == 200
    assert served.sink.received == [(padded, "http")]


def test_unhandled_error_is_a_short_json_500_logged_once_without_the_body(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = served.client.post("/boom", content=b"canary-body-in-a-crash")

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "Traceback" not in response.text and "internal detail" not in response.text
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == ["unhandled error answering POST /boom"]
    assert "canary-body-in-a-crash" not in caplog.text


def test_openapi_schema_is_served_and_the_docs_ui_is_not(served: Served) -> None:
    schema = served.client.get("/openapi.json")
    docs = served.client.get("/docs")

    assert schema.status_code == 200
    assert "/slack/interactions" in schema.json()["paths"]
    assert docs.status_code == 404


# --------------------------------------------------------------------------- the server


def slow_router(started: threading.Event) -> APIRouter:
    router = APIRouter()

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        started.set()
        await asyncio.sleep(0.5)
        return {"status": "finished"}

    return router


def test_stop_lets_a_request_in_flight_finish_then_ends_the_thread_and_frees_the_port() -> None:
    started = threading.Event()
    server = WebServer(create_app([slow_router(started)]), HttpOptions(port=0))
    server.start()
    port, replies = server.port, []
    client = threading.Thread(target=lambda: replies.append(httpx.get(f"{server.url}/slow", timeout=5.0)))
    client.start()
    assert started.wait(5.0)

    assert server.stop(timeout=5.0)

    client.join(5.0)
    assert [(reply.status_code, reply.json()) for reply in replies] == [(200, {"status": "finished"})]
    assert not server.running
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_server_leaves_signal_handlers_and_logging_to_the_daemon() -> None:
    def signal_handlers() -> dict[int, object]:
        return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    before = signal_handlers(), list(logging.getLogger().handlers)

    with WebServer(create_app(), HttpOptions(port=0)):
        during = signal_handlers(), list(logging.getLogger().handlers)

    assert during == before
    assert logging.getLogger("uvicorn").handlers == []  # uvicorn's own logging config was not applied


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="this host has no IPv6 loopback (::1)")
def test_serves_on_an_ipv6_listen_address() -> None:
    with WebServer(create_app(), HttpOptions.from_listen("[::1]:0")) as server:
        response = httpx.get(f"{server.url}/openapi.json", timeout=5.0)

    assert server.url.startswith("http://[::1]:")
    assert response.status_code == 200


def test_start_on_a_port_already_taken_fails_clearly() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = WebServer(create_app(), HttpOptions(port=port))

        with pytest.raises(
            WebServerError, match=rf"cannot listen on 127\.0\.0\.1:{port}: Address already in use"
        ):
            server.start()
        assert not server.running


def test_start_fails_clearly_when_the_app_start_up_fails() -> None:
    @asynccontextmanager
    async def broken_lifespan(app: FastAPI) -> Any:
        raise RuntimeError("store unreachable")
        yield

    app = create_app()
    app.router.lifespan_context = broken_lifespan
    server = WebServer(app, HttpOptions(port=0))

    with pytest.raises(WebServerError, match="failed while starting"):
        server.start(timeout=5.0)
    assert not server.running


def test_start_fails_clearly_when_the_tls_files_are_missing(tmp_path: Path) -> None:
    options = HttpOptions(port=0, tls_cert=tmp_path / "missing.pem", tls_key=tmp_path / "missing-key.pem")

    with pytest.raises(WebServerError, match=r"cannot load the TLS certificate .*missing\.pem"):
        WebServer(create_app(), options).start()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key: with `cryptography` if installed, else the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip(
                "neither the cryptography package nor the openssl CLI is available to make a certificate"
            )
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key
    import ipaddress

    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def test_tls_serves_signed_clicks_over_https(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    sink, clock = RecordingSink(), FakeClock()
    app = create_app([slack_router(SECRET, sink, clock=clock)])
    body = form_body(CLICK)

    with WebServer(app, HttpOptions(port=0, tls_cert=cert, tls_key=key)) as server:
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trusted, timeout=5.0) as client:
            response = client.post(
                f"{server.url}/slack/interactions",
                content=body,
                headers=slack_headers(body, timestamp=int(clock.now)),
            )

    assert server.url.startswith("https://127.0.0.1:")
    assert response.status_code == 200
    assert sink.received == [(CLICK, "http")]


# --------------------------------------------------------------------------- listen addresses


@pytest.mark.parametrize(
    "listen, expected",
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (" 0.0.0.0:443 ", ("0.0.0.0", 443)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:0", ("::", 0)),
        ("localhost:9000", ("localhost", 9000)),
    ],
)
def test_listen_addresses_are_read_as_host_and_port(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen, complaint",
    [
        ("8080", "expected HOST:PORT"),
        (":8080", "expected HOST:PORT"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("::1:8080", "in brackets"),
        ("[::1]8080", r"as \[::1\]:8080"),
        ("[::1:8080", r"as \[::1\]:8080"),
    ],
)
def test_bad_listen_addresses_are_refused_with_the_fix(listen: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_listen(listen)


def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both a certificate and a key"):
        HttpOptions(tls_cert=tmp_path / "cert.pem")
