"""Benchmark: how fast tfops acknowledges Slack interactions in HTTP mode, against a bare route.

Load: an open-loop burst, by default 50 requests/s for 10 s. A dispatcher sends each request at
its scheduled time whether or not earlier ones were answered, through a pool of client threads
with keep-alive connections; a request's latency runs from its *scheduled* time to the end of
the reply, so a stalled server is charged for the requests queued behind the stall.

- tfops: `POST /slack/interactions` with a realistic block_actions payload, signed at send time;
  the route verifies (slack-sdk SignatureVerifier), parses and submits to a realistic sink: a
  queue.Queue drained by one worker thread that spends ~20 ms per item (2 ms of CPU, then
  18 ms waiting, as a store write or a Slack call would).
- baseline: the same server stack (uvicorn thread, the same app with its body cap and error
  guard) and the same requests, sent to a bare route that answers 200 without verifying.

Target (issue 4): p99 acknowledgement under 300 ms, a tenth of Slack's 3-second deadline.
Clients, server and sink share one process (and its GIL), as the daemon would share it with
its own threads. Medians over `--runs` runs; each run measures both, alternating which goes first.

    .venv/bin/python bench/bench_slack_ack.py [--runs 3] [--rate 50] [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Response

from tfops.web import HttpOptions, WebServer, create_app, slack_router

SECRET = "bench-signing-secret"
SLACK_PATH = "/slack/interactions"
BARE_PATH = "/bench/bare"
WORK_SECONDS, CPU_SECONDS = 0.020, 0.002


class QueueSink:
    """The shape of the real approval desk's intake: enqueue now, work on another thread."""

    def __init__(self) -> None:
        self.items: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self.done = 0
        self._worker = threading.Thread(target=self._drain, name="bench-sink", daemon=True)
        self._worker.start()

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        self.items.put_nowait(payload)

    def close(self) -> None:
        self.items.put(None)
        self._worker.join()

    def _drain(self) -> None:
        while (payload := self.items.get()) is not None:
            busy_until = time.perf_counter() + CPU_SECONDS
            while time.perf_counter() < busy_until:  # parse, decide, render: holds the GIL
                hashlib.sha256(json.dumps(payload).encode()).digest()
            time.sleep(WORK_SECONDS - CPU_SECONDS)  # store write, Slack call: waits on I/O
            self.done += 1


def bare_router() -> APIRouter:
    router = APIRouter()

    @router.post(BARE_PATH)
    async def bare() -> Response:
        return Response(status_code=200)

    return router


def click_payload() -> dict[str, Any]:
    """A block_actions payload the size Slack sends for a tfops plan message (~6 KB encoded)."""
    blocks = [
        {
            "type": "section",
            "block_id": f"resources-{index}",
            "text": {"type": "mrkdwn", "text": f"~ `module.app.aws_instance.web[{index}]` (update)\n" * 4},
        }
        for index in range(12)
    ]
    return {
        "type": "block_actions",
        "user": {"id": "U024BE7LH", "username": "alice", "name": "alice", "team_id": "T0CAG"},
        "api_app_id": "A0BENCH",
        "token": "verification-token-unused",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0INFRA"},
        "trigger_id": "1234567890.123456.abcdef",
        "team": {"id": "T0CAG", "domain": "acme"},
        "channel": {"id": "C0INFRA", "name": "infra"},
        "message": {
            "type": "message",
            "ts": "1700000000.000100",
            "text": "plan for network",
            "blocks": blocks,
        },
        "response_url": "https://hooks.slack.com/actions/T0CAG/1/abc",
        "actions": [
            {
                "type": "button",
                "action_id": "tfops_approve",
                "block_id": "decision",
                "value": "run:42",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": "1700000001.000200",
            }
        ],
    }


def signed_headers(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }


@dataclass
class Phase:
    latencies_ms: list[float]
    errors: int

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


def open_loop(
    port: int,
    path: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    clients: int,
    headers: Callable[[bytes], dict[str, str]] | None = None,
) -> Phase:
    """Send `rate * seconds` requests on schedule; latency from scheduled time to the end of the reply."""
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def connection() -> http.client.HTTPConnection:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        return local.conn

    def send(scheduled: float) -> None:
        nonlocal errors
        conn = connection()
        try:
            conn.request("POST", path, body=body, headers=(headers or signed_headers)(body))
            reply = conn.getresponse()
            reply.read()
            ok = reply.status in (200, 202)
        except (OSError, http.client.HTTPException):
            conn.close()
            local.conn, ok = None, False
        elapsed_ms = (time.perf_counter() - scheduled) * 1000
        with lock:
            latencies.append(elapsed_ms)
            errors += not ok

    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="bench-client") as pool:
        start = time.perf_counter() + 0.05
        for index in range(total):
            scheduled = start + index / rate
            time.sleep(max(0.0, scheduled - time.perf_counter()))
            pool.submit(send, scheduled)
    return Phase(latencies, errors)


def one_run(port: int, body: bytes, *, slack_first: bool, args: argparse.Namespace) -> dict[str, Phase]:
    order = [("tfops", SLACK_PATH), ("baseline", BARE_PATH)]
    results = {}
    for name, path in order if slack_first else reversed(order):
        results[name] = open_loop(
            port, path, body, rate=args.rate, seconds=args.seconds, clients=args.clients
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    sink = QueueSink()
    app = create_app([slack_router(SECRET, sink), bare_router()])
    body = urlencode({"payload": json.dumps(click_payload())}).encode()
    runs: list[dict[str, Phase]] = []
    with WebServer(app, HttpOptions(host="127.0.0.1", port=0)) as server:
        for run in range(args.runs):
            runs.append(one_run(server.port, body, slack_first=run % 2 == 0, args=args))
            tfops, base = runs[-1]["tfops"], runs[-1]["baseline"]
            print(
                f"run {run + 1}: tfops p50 {tfops.percentile(50):6.2f} ms  p99 {tfops.percentile(99):6.2f} ms"
                f" | baseline p50 {base.percentile(50):6.2f} ms  p99 {base.percentile(99):6.2f} ms"
                f" | errors {tfops.errors}/{base.errors}  sink backlog {sink.items.qsize()}"
            )
    sink.close()

    def median(name: str, q: int) -> float:
        return statistics.median(run[name].percentile(q) for run in runs)

    p50, p99 = median("tfops", 50), median("tfops", 99)
    base50, base99 = median("baseline", 50), median("baseline", 99)
    requests = int(args.rate * args.seconds)
    print()
    print(
        f"# Slack interaction acknowledgement, HTTP mode: {requests} requests at {args.rate:g}/s open loop,"
    )
    print(f"# {args.clients} client threads, body {len(body)} bytes; medians of {args.runs} runs")
    print(f"baseline (bare route)   p50 {base50:6.2f} ms   p99 {base99:6.2f} ms")
    print(f"tfops (verify + submit) p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    print(f"ratio tfops/baseline    p50 {p50 / base50:6.2f}x     p99 {p99 / base99:6.2f}x")
    print(f"target p99 < 300 ms: {'met' if p99 < 300 else 'NOT met'}; sink handled {sink.done} items")
    print("errors:", sum(run["tfops"].errors + run["baseline"].errors for run in runs))


if __name__ == "__main__":
    main()
