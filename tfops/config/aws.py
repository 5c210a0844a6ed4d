"""``aws:`` (the daemon's AWS client settings) and the per-stack ``aws:`` block and ``secrets:``
references that ``defaults:`` and ``stacks:`` take.

Roles and secret references live in tfops' config only, never in the Terraform repository: a
repository must not be able to choose the identity it is deployed with. Nothing here is a secret
(role ARNs, variable NAMES and references are not), so errors may show them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

from tfops.aws.references import SecretReference, parse_reference
from tfops.config.durations import parse_duration
from tfops.config.fields import EnvName, FrozenDict, SecretEnvName, Section
from tfops.errors import AwsSecretError

# STS AssumeRole accepts DurationSeconds from 15 minutes to 12 hours (the role's own
# MaxSessionDuration may allow less; STS then refuses, and the run says so).
MIN_SESSION_SECONDS = 900.0
MAX_SESSION_SECONDS = 43200.0
DEFAULT_SESSION_SECONDS = 3600.0

# Role names and paths are [\w+=,.@-] (ASCII), a path adds '/' separators; partitions are aws,
# aws-cn, aws-us-gov, aws-iso, ...
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
# Every AWS region name is letters, '-' separated, ending in a number (eu-west-1, us-gov-east-1).
_REGION = re.compile(r"[a-z]{2,}(-[a-z]+)+-\d+")


def parse_secret_reference(reference: str) -> SecretReference:
    """``ssm:/prod/db/password`` or ``secretsmanager:prod/api#key`` → its parts (the reader's own
    rules, tfops.aws.references); ValueError with the reason if it is not a reference."""
    try:
        return parse_reference(reference.strip())
    except AwsSecretError as exc:
        raise ValueError(exc.args[0]) from None


def _secret_reference(reference: str) -> str:
    parse_secret_reference(reference)
    return reference.strip()


def _role_arn(value: str) -> str:
    value = value.strip()
    if not _ROLE_ARN.fullmatch(value):
        raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::<12-digit account id>:role/<name>)")
    return value


def _region(value: str) -> str:
    value = value.strip()
    if not _REGION.fullmatch(value):
        raise ValueError(f"{value!r} is not an AWS region name (e.g. eu-west-1)")
    return value


def _endpoint_url(value: str) -> str:
    # Not echoed: a URL may carry user:password, which is the mistake this refuses.
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host (e.g. http://127.0.0.1:5000)")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; tfops signs AWS calls with its own identity")
    return value.strip()


# The services tfops itself calls; each may have its own endpoint (a VPC interface endpoint
# without private DNS, or a test server for one of them).
AWS_SERVICES = ("sts", "ssm", "secretsmanager", "cloudtrail")


def _service_endpoints(value: dict[str, str]) -> FrozenDict:
    unknown = sorted(set(value) - set(AWS_SERVICES))
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; tfops calls {', '.join(AWS_SERVICES)}")
    return FrozenDict({service: _endpoint_url(url) for service, url in value.items()})


def _session_duration(value: object) -> float:
    seconds = parse_duration(value)
    if not MIN_SESSION_SECONDS <= seconds <= MAX_SESSION_SECONDS:
        raise ValueError(f"STS sessions last from 15m to 12h — got {value!r}")
    return seconds


RoleArn = Annotated[str, AfterValidator(_role_arn)]
SessionDuration = Annotated[float, BeforeValidator(_session_duration)]
SecretReferenceText = Annotated[str, AfterValidator(_secret_reference)]
# `secrets:`: environment variable NAME → reference. Neither is secret; the values they resolve to are.
SecretsMapping = Annotated[dict[EnvName, SecretReferenceText], AfterValidator(FrozenDict)]


class AwsSettings(Section):
    """The daemon's AWS clients: STS (roles), SSM and Secrets Manager (secrets), CloudTrail."""

    region: Annotated[str, AfterValidator(_region)] | None = None  # None: boto3's default chain
    endpoint_url: Annotated[str, AfterValidator(_endpoint_url)] | None = None  # every AWS call
    # One service's calls elsewhere than endpoint_url: {cloudtrail: https://…}.
    service_endpoints: Annotated[dict[str, str], AfterValidator(_service_endpoints)] = FrozenDict()
    attribution: bool = False  # who caused a drift, from CloudTrail; a stack's aws.attribution wins


class StackAwsSettings(Section):
    """A stack's AWS identities, in ``defaults.aws`` or a stack's ``aws``.

    In a stack, only the keys it writes override ``defaults.aws`` (``null`` included: a stack
    writing ``plan_role: null`` plans with the daemon's own identity).
    """

    plan_role: RoleArn | None = None  # plan, drift, show; None: the daemon's own identity
    apply_role: RoleArn | None = None  # the apply of a saved plan
    external_id_env: SecretEnvName | None = None  # the NAME of the variable holding the external id
    session_duration: SessionDuration = DEFAULT_SESSION_SECONDS
    attribution: bool | None = None  # None: inherit (defaults.aws, then aws.attribution)

    inline_secret_hints: ClassVar[Mapping[str, str]] = {
        "external_id": "name the variable holding it with external_id_env"
    }


def merge_stack_aws(defaults: StackAwsSettings, entry: StackAwsSettings | None) -> StackAwsSettings:
    """``defaults.aws`` with the keys the stack's ``aws:`` block writes laid over it."""
    if entry is None:
        return defaults
    merged = defaults.model_copy(update={name: getattr(entry, name) for name in entry.model_fields_set})
    if merged.attribution is None:  # `attribution: null` in the stack inherits, like leaving it out
        merged = merged.model_copy(update={"attribution": defaults.attribution})
    return merged


def inherit_attribution(defaults: StackAwsSettings, aws: AwsSettings) -> StackAwsSettings:
    """``defaults.aws`` whose unset ``attribution`` takes ``aws.attribution``: every stack then
    inherits the global switch through the defaults it is built from."""
    if defaults.attribution is not None:
        return defaults
    return defaults.model_copy(update={"attribution": aws.attribution})
