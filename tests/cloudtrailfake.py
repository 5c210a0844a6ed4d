"""A CloudTrail `LookupEvents` endpoint on loopback, for the real boto3 client (moto has none).

It speaks AWS JSON 1.1 (`X-Amz-Target: …CloudTrail_20131101.LookupEvents`), serves the events a
test records, filtered by the ResourceName attribute and the time range, most recent first, paged
with `NextToken`. Each event carries `CloudTrailEvent`, the JSON string the real API returns, so
tfops parses the real shape. It counts requests and can answer with a JSON 1.1 error instead
(`fail_with("ThrottlingException")`). Signatures are not checked.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCOUNT = "111111111111"
TARGET = "CloudTrail_20131101.LookupEvents"  # botocore prefixes com.amazonaws.cloudtrail.v20131101.


@dataclass(frozen=True)
class LookupRequest:
    resource_name: str | None
    start: datetime | None
    end: datetime | None
    next_token: str | None


@dataclass
class CloudTrailFake:
    url: str = ""
    page_size: int = 50
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[LookupRequest] = field(default_factory=list)
    failure: tuple[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        resource_name: str,
        event_name: str,
        principal: str,
        *,
        time: datetime,
        session: str | None = None,
        source_ip: str = "203.0.113.7",
        user_agent: str = "console.amazonaws.com",
        read_only: bool = False,
    ) -> None:
        """An event on `resource_name` by `principal` (a user ARN, or a role ARN with `session`)."""
        identity = _identity(principal, session)
        detail = {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventName": event_name,
            "sourceIPAddress": source_ip,
            "userAgent": user_agent,
            "readOnly": read_only,
            "eventID": str(uuid.uuid4()),
            "recipientAccountId": ACCOUNT,
        }
        with self._lock:
            self.events.append(
                {
                    "EventId": detail["eventID"],
                    "EventName": event_name,
                    "ReadOnly": "true" if read_only else "false",
                    "EventTime": time.timestamp(),
                    "EventSource": "ec2.amazonaws.com",
                    "Username": session or principal.rsplit("/", 1)[-1],
                    "Resources": [{"ResourceType": "AWS::EC2::SecurityGroup", "ResourceName": resource_name}],
                    "CloudTrailEvent": json.dumps(detail),
                }
            )

    def fail_with(self, code: str | None, message: str = "") -> None:
        """Answer every request with this JSON 1.1 error (None: answer normally again)."""
        self.failure = (code, message or f"{code} (cloudtrail fake)") if code else None

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = next(
            (
                a["AttributeValue"]
                for a in body.get("LookupAttributes") or ()
                if a.get("AttributeKey") == "ResourceName"
            ),
            None,
        )
        start, end = _time(body.get("StartTime")), _time(body.get("EndTime"))
        token = body.get("NextToken")
        with self._lock:
            self.requests.append(LookupRequest(name, start, end, token))
            if self.failure:
                return 400, {"__type": self.failure[0], "message": self.failure[1]}
            matching = [e for e in self.events if _matches(e, name, start, end)]
        matching.sort(key=lambda e: e["EventTime"], reverse=True)
        offset = int(token or 0)
        page = matching[offset : offset + min(self.page_size, int(body.get("MaxResults") or 50))]
        answer: dict[str, Any] = {"Events": page}
        if offset + len(page) < len(matching):
            answer["NextToken"] = str(offset + len(page))
        return 200, answer


def _identity(principal: str, session: str | None) -> dict[str, Any]:
    if session is None:
        return {
            "type": "IAMUser",
            "arn": principal,
            "accountId": ACCOUNT,
            "userName": principal.rsplit("/", 1)[-1],
        }
    role = principal.rsplit("/", 1)[-1]
    return {
        "type": "AssumedRole",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        "accountId": ACCOUNT,
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "arn": principal, "userName": role},
            "attributes": {"mfaAuthenticated": "false"},
        },
    }


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value is not None else None


def _matches(event: dict[str, Any], name: str | None, start: datetime | None, end: datetime | None) -> bool:
    at = datetime.fromtimestamp(event["EventTime"], UTC)
    if (start and at < start) or (end and at > end):
        return False
    return name is None or any(r["ResourceName"] == name for r in event["Resources"])


class _Handler(BaseHTTPRequestHandler):
    fake: CloudTrailFake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not str(self.headers.get("X-Amz-Target")).endswith(TARGET):
            status, answer = 400, {"__type": "UnknownOperationException", "message": "not faked"}
        else:
            status, answer = self.fake.answer(body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start() -> tuple[ThreadingHTTPServer, CloudTrailFake]:
    fake = CloudTrailFake()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server, fake
