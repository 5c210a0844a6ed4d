"""The AWS endpoint on loopback for tests: moto's server (STS, SSM, Secrets Manager, S3, DynamoDB).

One server per test session (starting one takes a second); `reset` empties every service between
tests, so each test starts from an empty account. Real boto3 clients and the real Terraform S3
backend talk to it through `endpoint_url`; nothing in tfops is patched.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account for the default credentials


@dataclass(frozen=True)
class MotoEndpoint:
    url: str
    region: str = REGION
    # The identity a test gives the daemon (its "instance profile"): moto accepts any key.
    access_key_id: str = "AKIATFOPSDAEMON00001"
    secret_access_key: str = "daemon-secret-access-key-not-for-terraform"

    def daemon_env(self) -> dict[str, str]:
        """The daemon's own AWS environment, as an instance's would be."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def enforce_iam(self, enforced: bool) -> None:
        """Have moto check every call against IAM policies (its `reset-auth`, the server side of
        INITIAL_NO_AUTH_ACTION_COUNT), or stop checking."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            method="POST",
            data=b"0" if enforced else b"inf",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def reset(self) -> None:
        """Empty every service, as a new account would be."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


def start() -> tuple[ThreadedMotoServer, MotoEndpoint]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, MotoEndpoint(url=f"http://{host}:{port}")
