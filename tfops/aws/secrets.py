"""Secret values from AWS: SSM parameters and Secrets Manager secrets, read with boto3.

References are parsed by tfops.aws.references (the same rules the config checks them with).
Every error names the reference and AWS's error code, never the value: a value that fails to
parse is not quoted, and messages from AWS name the resource, not its content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tfops.aws.clients import AwsClients
from tfops.aws.references import SecretReference, parse_reference
from tfops.aws.roles import TemporaryCredentials
from tfops.errors import AwsSecretError

UNREACHABLE_HINT = (
    "check the reading identity's credentials, aws.region and aws.endpoint_url, and the network"
)


class SecretReader:
    """Reads secret references with boto3: as tfops itself, or with a role's credentials."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def read(self, reference: SecretReference | str, credentials: TemporaryCredentials | None = None) -> str:
        """The value the reference points at. Raises AwsSecretError naming the reference."""
        if isinstance(reference, str):
            reference = parse_reference(reference)
        return _pick(reference, self._fetch(reference, credentials))

    def read_all(
        self,
        references: Mapping[str, SecretReference | str],
        credentials: TemporaryCredentials | None = None,
    ) -> dict[str, str]:
        """{environment name: value} for {environment name: reference}; several keys of one
        secret cost one call. The first reference that cannot be read raises."""
        parsed = {
            env_name: parse_reference(ref) if isinstance(ref, str) else ref
            for env_name, ref in references.items()
        }
        fetched: dict[tuple[str, str], str] = {}
        values: dict[str, str] = {}
        for env_name, reference in parsed.items():
            where = (reference.service, reference.name)
            if where not in fetched:
                fetched[where] = self._fetch(reference, credentials)
            values[env_name] = _pick(reference, fetched[where])
        return values

    def _fetch(self, reference: SecretReference, credentials: TemporaryCredentials | None) -> str:
        """The whole stored string (before `#key` is applied)."""
        try:
            client = self._clients.client(reference.service, credentials)
            if reference.service == "ssm":
                answer = client.get_parameter(Name=reference.name, WithDecryption=True)
                return str(answer["Parameter"]["Value"])
            return _secret_string(reference, client.get_secret_value(SecretId=reference.name))
        except ClientError as refused:
            raise _refusal(reference, refused) from None
        except BotoCoreError as failed:
            raise AwsSecretError(
                f"cannot read secret {reference}: {type(failed).__name__}: {' '.join(str(failed).split())}",
                hint=UNREACHABLE_HINT,
            ) from None


def _secret_string(reference: SecretReference, answer: dict[str, Any]) -> str:
    if "SecretString" not in answer:
        raise AwsSecretError(
            f"secret {reference} is binary (SecretBinary); tfops reads only SecretString",
            hint="store the secret as a string (or a JSON object and pick a field with #key)",
        )
    return str(answer["SecretString"])


def _pick(reference: SecretReference, stored: str) -> str:
    """The value, or the `#key` field of the JSON object it holds (a string or a number)."""
    if reference.key is None:
        return stored
    try:
        document = json.loads(stored)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AwsSecretError(f"secret {reference}: the value is not a JSON object, so it has no key")
    if reference.key not in document:
        raise AwsSecretError(f"secret {reference}: the JSON object has no key {reference.key!r}")
    field = document[reference.key]
    if isinstance(field, str):
        return field
    if isinstance(field, int | float) and not isinstance(field, bool):
        return json.dumps(field)
    raise AwsSecretError(
        f"secret {reference}: key {reference.key!r} holds a {type(field).__name__}, not a string or number"
    )


_MISSING = {"ParameterNotFound", "ParameterVersionNotFound", "ResourceNotFoundException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "KMSAccessDeniedException"}


def _refusal(reference: SecretReference, refused: ClientError) -> AwsSecretError:
    error = refused.response.get("Error", {})
    code = error.get("Code", "Unknown")
    said = " ".join(f"{code}: {error.get('Message', '')}".rstrip(": ").split())
    status = refused.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _MISSING:
        return AwsSecretError(f"secret {reference} does not exist ({said})")
    if code in _DENIED or status == 403:  # 403: a denial whatever the code (some endpoints send XML)
        return AwsSecretError(
            f"access to secret {reference} denied ({said})",
            hint="allow the identity that reads it (the plan role or tfops' own) to read and decrypt it",
        )
    return AwsSecretError(f"cannot read secret {reference}: {said}")
