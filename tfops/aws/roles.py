"""A stack's AWS role, assumed with STS from tfops' own identity, for one Terraform process.

Terraform gets only the temporary credentials of the phase's role, never the daemon's own. The
session name names the run (`tfops-<stack>-<run id>`) so CloudTrail shows which run did what.
Credentials are cached in memory while they stay valid for `margin_seconds` more (a plan must not
start with credentials that expire half way), never stored, never logged: `TemporaryCredentials`
has no readable repr, and its `values()` are what the run's redaction must hold.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from tfops.aws.clients import AwsClients
from tfops.errors import AwsRoleError

# STS limits on RoleSessionName: 2 to 64 characters of [\w+=,.@-] (ASCII word characters).
SESSION_NAME_MAX = 64
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")
SESSION_PREFIX = "tfops"
CHECK_SESSION = "tfops-check-config"
MIN_DURATION = 900  # STS refuses less than 15 minutes
UNREACHABLE_HINT = (
    "tfops could not ask STS: check its own AWS identity (instance profile or environment), "
    "aws.region and aws.endpoint_url, and the network to them"
)


@dataclass(frozen=True, repr=False)
class TemporaryCredentials:
    """One assumed role's credentials. Its repr shows only the expiry: it may end up in a log."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    def __repr__(self) -> str:
        return f"TemporaryCredentials(expiration={self.expiration.isoformat()})"

    def env(self, region: str | None) -> dict[str, str]:
        """The variables that give a process exactly this identity (and the region, when known)."""
        variables = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }
        if region:
            variables["AWS_REGION"] = region
            variables["AWS_DEFAULT_REGION"] = region
        return variables

    def values(self) -> frozenset[str]:
        """What the run's redaction must hold (the key id too: it names the session in CloudTrail)."""
        return frozenset({self.access_key_id, self.secret_access_key, self.session_token})


def session_name(stack: str, run_id: int) -> str:
    """`tfops-<stack>-<run id>` within STS limits: odd characters become '-', and a long stack
    name is cut, never the run id (CloudTrail must still tell runs apart)."""
    tail = f"-{run_id}"
    room = SESSION_NAME_MAX - len(SESSION_PREFIX) - 1 - len(tail)
    name = f"{SESSION_PREFIX}-{_NOT_ALLOWED.sub('-', stack)[: max(room, 0)]}{tail}"
    return _NOT_ALLOWED.sub("-", name)[-SESSION_NAME_MAX:]


def _utcnow() -> datetime:
    return datetime.now(UTC)


_Key = tuple[str, str, str | None, int]


class RoleAssumer:
    """Assumes roles with STS as tfops itself and caches the credentials while they stay valid.

    Thread-safe: runs of different stacks assume in parallel; two runs asking for the same role
    and session at once make one STS call (a lock per cache key).
    """

    def __init__(
        self,
        clients: AwsClients,
        *,
        margin_seconds: float = 300.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._clients = clients
        self._margin = timedelta(seconds=margin_seconds)
        self._clock = clock
        self._cache: dict[_Key, TemporaryCredentials] = {}
        self._locks: dict[_Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def credentials(
        self,
        role_arn: str,
        *,
        session_name: str,
        external_id: str | None = None,
        duration_seconds: int = 3600,
    ) -> TemporaryCredentials:
        """The role's credentials for this session, from the cache while valid, else from STS.
        Raises AwsRoleError (role ARN and AWS's error code and message) if STS refuses."""
        key: _Key = (role_arn, session_name, external_id, duration_seconds)
        with self._key_lock(key):
            cached = self._cache.get(key)
            if cached is not None and self._fresh(cached):
                return cached
            found = self._assume(role_arn, session_name, external_id, duration_seconds)
            with self._guard:
                self._forget_stale()
                self._cache[key] = found
            return found

    def check(self, role_arn: str, external_id: str | None = None) -> str | None:
        """Assume the role once, bypassing the cache: None if STS agrees, else why not."""
        try:
            self._assume(role_arn, CHECK_SESSION, external_id, MIN_DURATION)
        except AwsRoleError as refused:
            return refused.reason
        return None

    def _assume(
        self, role_arn: str, name: str, external_id: str | None, duration: int
    ) -> TemporaryCredentials:
        request: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": name,
            "DurationSeconds": duration,
        }
        if external_id is not None:
            request["ExternalId"] = external_id
        try:
            answer = self._clients.client("sts").assume_role(**request)
        except ClientError as refused:
            error = refused.response.get("Error", {})
            reason = f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
            raise AwsRoleError(f"cannot assume {role_arn}: {reason}", reason=reason) from None
        except BotoCoreError as failed:
            # No identity, no endpoint, a parameter STS would refuse: botocore's own messages
            # name the problem and carry no credentials.
            reason = f"{type(failed).__name__}: {' '.join(str(failed).split())}"
            asked = isinstance(failed, ParamValidationError)  # the request itself is wrong
            raise AwsRoleError(
                f"cannot assume {role_arn}: {reason}",
                reason=reason,
                hint=None if asked else UNREACHABLE_HINT,
            ) from None
        given = answer["Credentials"]
        return TemporaryCredentials(
            access_key_id=given["AccessKeyId"],
            secret_access_key=given["SecretAccessKey"],
            session_token=given["SessionToken"],
            expiration=_aware(given["Expiration"]),
        )

    def _fresh(self, credentials: TemporaryCredentials) -> bool:
        return credentials.expiration - self._margin > self._clock()

    def _forget_stale(self) -> None:
        for key in [key for key, found in self._cache.items() if not self._fresh(found)]:
            del self._cache[key]
        # Session names carry the run id, so keys come and go: a lock nobody holds goes with its entry.
        for key in [key for key, lock in self._locks.items() if key not in self._cache and not lock.locked()]:
            del self._locks[key]

    def _key_lock(self, key: _Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
