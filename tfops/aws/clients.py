"""boto3 clients for tfops' AWS calls: its own identity, or a role's temporary credentials.

tfops' own identity is the default credential chain (an instance profile in production, static
keys in tests) of a session built from the environment tfops is given: the environment step of
that chain reads the given mapping, never `os.environ` behind the caller's back, so a test or a
second daemon in one process can have its own identity.

boto3 sessions are not thread-safe but the clients they make are: one lock guards the session
while a client is made, and clients are kept (tfops' own per service, a role's per service and
access key, a few at a time) so a run does not pay for a new client on every call.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import EnvProvider

if TYPE_CHECKING:
    from tfops.aws.roles import TemporaryCredentials
    from tfops.config.aws import AwsSettings

# Timeouts short enough that an unreachable endpoint fails a run in seconds, not minutes; the
# standard retry mode backs off on throttling and 5xx answers by itself.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 4
# CloudTrail's LookupEvents throttles at 2 requests/s; tfops' own token bucket keeps under that,
# so a throttled answer means another caller shares the limit: retry once, then report the drift
# unattributed rather than hold the drift run for the backoff of three more attempts.
SERVICE_ATTEMPTS = {"cloudtrail": 2}
ROLE_CLIENTS_KEPT = 32  # a role's clients kept: a handful of stacks × services in flight

# botocore's DEBUG records carry whole request and response bodies: AssumeRole's secret key and
# session token, GetParameter's and GetSecretValue's values. They are written before tfops can
# add a value to any redaction set, so botocore never logs below INFO, whatever the root level.
for _name in ("botocore", "boto3"):
    if logging.getLogger(_name).level < logging.INFO:  # NOTSET (0) too: it would follow the root
        logging.getLogger(_name).setLevel(logging.INFO)


@dataclass(frozen=True)
class AwsEndpoint:
    """Where tfops' AWS calls go: the region (None: the environment's), an endpoint URL for
    every service (None: AWS itself; set for tests, LocalStack or a VPC endpoint), and one per
    service where that differs."""

    region: str | None = None
    endpoint_url: str | None = None
    service_endpoints: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, aws: AwsSettings) -> AwsEndpoint:
        """The endpoint the config's ``aws:`` section describes."""
        return cls(aws.region, aws.endpoint_url, tuple(sorted(aws.service_endpoints.items())))

    def url_for(self, service: str) -> str | None:
        return dict(self.service_endpoints).get(service, self.endpoint_url)


class AwsClients:
    """Makes and keeps boto3 clients, as tfops itself or with a role's temporary credentials."""

    def __init__(self, endpoint: AwsEndpoint, environ: Mapping[str, str]) -> None:
        self.endpoint = endpoint
        self.region = endpoint.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        self._config = Config(
            region_name=self.region,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        )
        self._session = _session(environ)
        self._lock = threading.Lock()
        self._own: dict[str, Any] = {}
        self._roles: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def client(self, service: str, credentials: TemporaryCredentials | None = None) -> Any:
        """A client for `service`: tfops' own identity, or the given temporary credentials."""
        with self._lock:
            if credentials is None:
                if service not in self._own:
                    self._own[service] = self._make(service)
                return self._own[service]
            key = (service, credentials.access_key_id)
            if key in self._roles:
                self._roles.move_to_end(key)
                return self._roles[key]
            made = self._make(
                service,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token,
            )
            self._roles[key] = made
            while len(self._roles) > ROLE_CLIENTS_KEPT:
                self._roles.popitem(last=False)
            return made

    def _make(self, service: str, **keys: str) -> Any:
        return self._session.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint.url_for(service),
            config=self._config.merge(
                Config(
                    retries={"mode": "standard", "max_attempts": SERVICE_ATTEMPTS.get(service, MAX_ATTEMPTS)}
                )
            ),
            **keys,
        )


def _session(environ: Mapping[str, str]) -> boto3.Session:
    """A session whose credential chain reads `environ` where it would read `os.environ`."""
    core = botocore.session.Session(profile=environ.get("AWS_PROFILE") or None)
    resolver = core.get_component("credential_provider")
    methods = [provider.METHOD for provider in resolver.providers]
    resolver.providers[methods.index(EnvProvider.METHOD)] = EnvProvider(environ=dict(environ))
    return boto3.Session(botocore_session=core)
