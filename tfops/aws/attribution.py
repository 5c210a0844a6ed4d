"""Who caused the drift: each drifted resource's AWS identifiers, asked of CloudTrail.

A drift run gives its plan's `resource_drift` entries; each resource is looked up by the
identifiers its `before` values carry (its id first: CloudTrail names most resources by id), and
the first identifier with write events answers. Nothing here fails a drift run: a lookup that
fails, or finds nothing, becomes "attribution unavailable: <reason>".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from tfops.attribution import ResourceAttribution, attribution_from_dict, render_line
from tfops.aws.trail import TrailLookup, TrailUnavailable

__all__ = [
    "ResourceAttribution",
    "attribute",
    "attribution_from_dict",
    "identifiers",
    "render_line",
]

# Per type, the `before` attributes that name the resource in CloudTrail, most specific first.
# Types not listed fall back to the generic id / arn / name.
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "aws_security_group": ("id", "arn", "name"),
    "aws_security_group_rule": ("security_group_id",),
    "aws_vpc_security_group_ingress_rule": ("security_group_id", "id", "arn"),
    "aws_vpc_security_group_egress_rule": ("security_group_id", "id", "arn"),
    "aws_instance": ("id", "arn"),
    "aws_s3_bucket": ("bucket", "id", "arn"),
    "aws_iam_role": ("name", "arn", "unique_id"),
    "aws_iam_user": ("name", "arn", "unique_id"),
    "aws_iam_policy": ("arn", "name", "policy_id"),
    "aws_ssm_parameter": ("name", "arn"),
    "aws_lambda_function": ("function_name", "arn"),
    "aws_db_instance": ("identifier", "arn", "resource_id"),
    "aws_route_table": ("id", "arn"),
    "aws_subnet": ("id", "arn"),
    "aws_vpc": ("id", "arn"),
}
_GENERIC_KEYS = ("id", "arn", "name")


def identifiers(change: Mapping[str, Any]) -> list[str]:
    """The AWS identifiers of a `resource_drift` entry, from its `before` values, most specific
    first, without duplicates. Values Terraform marks sensitive are left out."""
    inner = change.get("change") or {}
    before = inner.get("before")
    if not isinstance(before, Mapping):
        return []
    sensitive = inner.get("before_sensitive")
    keys = _TYPE_KEYS.get(str(change.get("type", "")), _GENERIC_KEYS)
    found: list[str] = []
    for key in keys:
        value = before.get(key)
        if isinstance(sensitive, Mapping) and sensitive.get(key) is True:
            continue
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found


def attribute(
    drift_changes: Iterable[Mapping[str, Any]], since: datetime | None, lookup: TrailLookup
) -> dict[str, ResourceAttribution]:
    """Attribute each drifted resource; never raises for AWS errors."""
    return {str(change.get("address", "")): _attribute_one(change, since, lookup) for change in drift_changes}


def _attribute_one(
    change: Mapping[str, Any], since: datetime | None, lookup: TrailLookup
) -> ResourceAttribution:
    address = str(change.get("address", ""))
    names = identifiers(change)
    if not names:
        return ResourceAttribution(address, unavailable="no AWS identifier in the plan's before values")
    failure: str | None = None
    for name in names:
        try:
            events = lookup.events(name, since)
        except TrailUnavailable as error:
            # Keep trying the others: one may still be answered from the cache.
            failure = failure or str(error).split("\n")[0]
            continue
        if events:
            return ResourceAttribution(address, events=events, identifier=name)
    if failure:
        return ResourceAttribution(address, unavailable=failure)
    start = lookup.window_start(since)
    return ResourceAttribution(address, unavailable=f"no write events since {_when(start)}")


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
