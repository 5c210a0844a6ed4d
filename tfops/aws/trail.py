"""CloudTrail `LookupEvents`, within its limit: who wrote to an AWS resource, and when.

CloudTrail answers `LookupEvents` at 2 requests/s per account and region and throttles beyond, so
every lookup takes a token from a bucket shared by the whole process, a run makes at most
`max_lookups` requests, and answers are cached for a short while (a drift run and the one after
it ask about the same resources). Only write events are kept: a `Describe*` says nothing about
who changed a resource. Failures are raised as `TrailUnavailable` with a short reason, which the
caller reports instead of failing the drift run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tfops.attribution import TrailEvent
from tfops.errors import RetryableError

__all__ = [
    "MAX_LOOKBACK",
    "TFOPS_SESSION_PREFIX",
    "TokenBucket",
    "TrailCache",
    "TrailEvent",
    "TrailLookup",
    "TrailUnavailable",
    "agent_kind",
    "parse_event",
    "shared_bucket",
    "shared_cache",
]

MAX_LOOKBACK = timedelta(days=90)  # CloudTrail's event history keeps 90 days
TFOPS_SESSION_PREFIX = "tfops-"  # tfops names its STS sessions tfops-<stack>-<run id>


class TrailUnavailable(RetryableError):
    """CloudTrail could not answer (throttled, denied, unreachable, or the run's bound is spent)."""

    hint = "the drift is reported without attribution; the next drift run tries again"


# --- events -------------------------------------------------------------------------------------------


def agent_kind(user_agent: str, *, from_console: bool = False) -> str:
    """Which tool made the call, from its user agent. Terraform first: its agent names the SDK too."""
    lowered = user_agent.lower()
    if "terraform" in lowered:
        return "terraform"
    if from_console or "console" in lowered or "signin.amazonaws.com" in lowered:
        return "console"
    if "aws-cli/" in lowered:
        return "cli"
    if any(sdk in lowered for sdk in ("boto3/", "botocore/", "aws-sdk-", "aws-internal")):
        return "sdk"
    return "other"


def parse_event(raw: dict[str, Any]) -> TrailEvent | None:
    """A `LookupEvents` event as a TrailEvent; None for a read-only one. The details live in the
    `CloudTrailEvent` JSON string, as in the real API."""
    detail = _detail(raw.get("CloudTrailEvent"))
    if _is_read_only(raw.get("ReadOnly"), detail.get("readOnly")):
        return None
    identity = detail.get("userIdentity") or {}
    context = identity.get("sessionContext") or {}
    issuer = context.get("sessionIssuer") or {}
    principal = str(identity.get("arn") or raw.get("Username") or "unknown principal")
    session = _session_name(identity, principal)
    user_agent = str(detail.get("userAgent") or "")
    from_console = str(detail.get("sessionCredentialFromConsole", "")).lower() == "true"
    return TrailEvent(
        event_id=str(raw.get("EventId") or detail.get("eventID") or ""),
        event_name=str(raw.get("EventName") or detail.get("eventName") or ""),
        time=_utc(raw.get("EventTime") or detail.get("eventTime")),
        principal_arn=principal,
        session_name=session,
        role_arn=issuer.get("arn") if session else None,
        source_ip=str(detail.get("sourceIPAddress") or ""),
        user_agent=user_agent,
        agent=agent_kind(user_agent, from_console=from_console),
        by_tfops=bool(session and session.startswith(TFOPS_SESSION_PREFIX)),
    )


def _detail(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        detail = json.loads(text)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _is_read_only(top: Any, inner: Any) -> bool:
    # An event that does not say is kept: missing a write is worse than showing a read.
    for value in (top, inner):
        if value is not None:
            return str(value).lower() == "true"
    return False


def _session_name(identity: dict[str, Any], principal: str) -> str | None:
    if identity.get("type") != "AssumedRole" and ":assumed-role/" not in principal:
        return None
    # arn:aws:sts::111111111111:assumed-role/<role>/<session>
    parts = principal.split("/")
    return parts[2] if len(parts) >= 3 else None


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.fromtimestamp(0, UTC)


# --- the limit: a token bucket and a cache shared by the process --------------------------------------


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; thread-safe. A caller reserves its token
    under the lock and sleeps outside it, so concurrent callers queue at the rate."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = burst
        self._updated = clock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class TrailCache:
    """Answers per (scope, identifier, since) for `ttl` seconds; thread-safe."""

    def __init__(self, ttl: float = 300.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, datetime], tuple[float, tuple[TrailEvent, ...]]] = {}

    def get(self, key: tuple[str, str, datetime]) -> tuple[TrailEvent, ...] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() - entry[0] > self._ttl:
                self._entries.pop(key, None)
                return None
            return entry[1]

    def put(self, key: tuple[str, str, datetime], events: tuple[TrailEvent, ...]) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), events)


_shared_lock = threading.Lock()
_buckets: dict[tuple[str, float], TokenBucket] = {}
_cache = TrailCache()


def shared_bucket(region: str, rate: float = 2.0) -> TokenBucket:
    """The process' bucket for a region: the limit is per account and region, and a process that
    serves several accounts keeps under it for each by keeping under it for all."""
    with _shared_lock:
        return _buckets.setdefault((region, rate), TokenBucket(rate))


def shared_cache() -> TrailCache:
    return _cache


# --- the lookup ---------------------------------------------------------------------------------------


class TrailLookup:
    """Write events on one AWS identifier, most recent first. One per drift run: `max_lookups`
    bounds that run's requests; the bucket and the cache are the process' unless given."""

    def __init__(
        self,
        client: Any,
        *,
        rate_per_second: float = 2.0,
        max_lookups: int = 20,
        events_per_resource: int = 3,
        pages_per_identifier: int = 2,
        scope: str = "",
        bucket: TokenBucket | None = None,
        cache: TrailCache | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        region = str(getattr(getattr(client, "meta", None), "region_name", "") or "")
        self._bucket = bucket or shared_bucket(region, rate_per_second)
        self._cache = cache if cache is not None else shared_cache()
        self.max_lookups = max_lookups
        self.events_per_resource = events_per_resource
        self._pages = pages_per_identifier
        self._scope = scope or region
        self._now = now
        self._lock = threading.Lock()
        self.requests = 0  # requests this run has made
        # Set when CloudTrail refused or could not be reached: denial and throttling hold for the
        # rest of a run, so the other resources are not asked (and do not deepen a throttle).
        self.stopped: str | None = None

    def window_start(self, since: datetime | None) -> datetime:
        """`since`, but no earlier than CloudTrail keeps events."""
        oldest = self._now() - MAX_LOOKBACK
        return oldest if since is None or since < oldest else since

    def events(self, identifier: str, since: datetime | None) -> tuple[TrailEvent, ...]:
        """The most recent write events on `identifier` since `since`; raises TrailUnavailable."""
        start = self.window_start(since)
        key = (self._scope, identifier, start)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found: list[TrailEvent] = []
        token: str | None = None
        for _ in range(self._pages):
            page = self._request(identifier, start, token)
            found.extend(e for e in map(parse_event, page.get("Events") or ()) if e is not None)
            token = page.get("NextToken")
            if not token or len(found) >= self.events_per_resource:
                break
        found.sort(key=lambda e: e.time, reverse=True)
        result = tuple(found[: self.events_per_resource])
        self._cache.put(key, result)
        return result

    def _request(self, identifier: str, start: datetime, token: str | None) -> dict[str, Any]:
        with self._lock:
            if self.stopped:
                raise TrailUnavailable(self.stopped)
            if self.requests >= self.max_lookups:
                raise TrailUnavailable(f"lookup bound reached ({self.max_lookups} per run)")
            self.requests += 1
        arguments: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": identifier}],
            "StartTime": start,
            "EndTime": self._now(),
        }
        if token:
            arguments["NextToken"] = token
        self._bucket.acquire()
        try:
            page: dict[str, Any] = self._client.lookup_events(**arguments)
        except ClientError as error:
            raise self._stop(_client_error_reason(error)) from error
        except BotoCoreError as error:
            raise self._stop(f"CloudTrail unreachable: {type(error).__name__}") from error
        return page

    def _stop(self, reason: str) -> TrailUnavailable:
        with self._lock:
            self.stopped = self.stopped or reason
        return TrailUnavailable(reason)


def _client_error_reason(error: ClientError) -> str:
    # The code and AWS' message name the action and the principal, never a credential.
    info = error.response.get("Error") or {}
    code = str(info.get("Code") or "error")
    message = str(info.get("Message") or "").strip()
    return f"{code}: {message}" if message else code
