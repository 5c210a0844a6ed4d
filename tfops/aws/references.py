"""Secret references: where in AWS a secret value lives, as tfops.yaml writes it. Pure text rules,
shared by the config check (tfops.config.aws) and the reader (tfops.aws.secrets), so a reference
the config accepts is exactly one the reader can read.

`ssm:/path/to/parameter` (or a plain name without '/'), optionally with `:version` or `:label`,
and `secretsmanager:<name or ARN>`; either with `#key` to pick one field of a JSON object
(neither service allows '#' in a name, so the split is plain). A reference is not a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from tfops.errors import AwsSecretError

Service = Literal["ssm", "secretsmanager"]
SERVICES: tuple[Service, ...] = ("ssm", "secretsmanager")
REFERENCE_HINT = "write ssm:/path/to/parameter or secretsmanager:secret-name#json-key"

# SSM: a hierarchy (/a/b) or a plain name, then an optional :version or :label selector, which
# GetParameter takes as part of the name.
_SSM_NAME = re.compile(r"(?:/[A-Za-z0-9_.-]+)+(?::[A-Za-z0-9_.-]+)?|[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?")
# Secrets Manager: a secret name or ARN (ARNs hold ':').
_SECRET_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]+")


@dataclass(frozen=True)
class SecretReference:
    """Where one secret value lives. `str()` gives the reference back as it is written."""

    service: Service
    name: str  # SSM parameter name, or Secrets Manager secret id (name or ARN)
    key: str | None = None  # a field of the JSON object the value holds

    def __str__(self) -> str:
        return f"{self.service}:{self.name}" + (f"#{self.key}" if self.key is not None else "")


def parse_reference(text: str) -> SecretReference:
    """The reference's parts; AwsSecretError naming the reference when it is not one."""
    service, colon, rest = text.partition(":")
    if not colon or service not in SERVICES:
        raise _refused(f"secret reference {text!r} must start with 'ssm:' or 'secretsmanager:'")
    name, hash_, key = rest.partition("#")
    if not name.strip():
        raise _refused(f"secret reference {text!r} has no name")
    if hash_ and not key:
        raise _refused(f"secret reference {text!r} has no key after #")
    _check_name(text, service, name)
    return SecretReference(service=cast(Service, service), name=name, key=key if hash_ else None)


def _check_name(text: str, service: str, name: str) -> None:
    if service == "secretsmanager":
        if not _SECRET_ID.fullmatch(name):
            raise _refused(f"secret reference {text!r}: {name!r} is not a secret name or ARN")
        return
    if "/" in name and not name.startswith("/"):
        raise _refused(
            f"secret reference {text!r}: an SSM parameter name starts with '/' when it has a path "
            "(ssm:/prod/db/password)"
        )
    if not _SSM_NAME.fullmatch(name):
        raise _refused(f"secret reference {text!r}: {name!r} is not an SSM parameter name")


def _refused(message: str) -> AwsSecretError:
    return AwsSecretError(message, hint=REFERENCE_HINT)
