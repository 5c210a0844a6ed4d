"""Who caused a drift, as data: the CloudTrail write events found for each drifted resource.

Pure and free of boto3: the store, the CLI, the API and Slack read and render attributions
without importing AWS' SDK. `tfops.aws.trail` finds the events, `tfops.aws.attribution` ties
them to a plan's drifted resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ResourceAttribution",
    "TrailEvent",
    "attribution_from_dict",
    "changed_what",
    "render_line",
    "render_who",
]


@dataclass(frozen=True)
class TrailEvent:
    """One write event on a resource, as CloudTrail recorded it."""

    event_id: str
    event_name: str
    time: datetime  # UTC
    principal_arn: str  # userIdentity.arn (for an assumed role: the assumed-role ARN)
    session_name: str | None  # the role session name when the principal assumed a role
    role_arn: str | None  # the role that was assumed (sessionIssuer.arn)
    source_ip: str
    user_agent: str
    agent: str  # console | cli | sdk | terraform | other
    by_tfops: bool  # the session is one of tfops' own (tfops-<stack>-<run id>)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "time": self.time.isoformat(),
            "principal_arn": self.principal_arn,
            "session_name": self.session_name,
            "role_arn": self.role_arn,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "agent": self.agent,
            "by_tfops": self.by_tfops,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrailEvent:
        moment = datetime.fromisoformat(str(data["time"]))
        return cls(
            event_id=str(data.get("event_id", "")),
            event_name=str(data.get("event_name", "")),
            time=moment if moment.tzinfo else moment.replace(tzinfo=UTC),
            principal_arn=str(data.get("principal_arn", "")),
            session_name=data.get("session_name"),
            role_arn=data.get("role_arn"),
            source_ip=str(data.get("source_ip", "")),
            user_agent=str(data.get("user_agent", "")),
            agent=str(data.get("agent", "other")),
            by_tfops=bool(data.get("by_tfops", False)),
        )


@dataclass(frozen=True)
class ResourceAttribution:
    """Who wrote to one drifted resource: its events (most recent first), or why we cannot say."""

    address: str
    events: tuple[TrailEvent, ...] = ()
    unavailable: str | None = None  # the reason, when there is nothing to show
    identifier: str | None = None  # the identifier CloudTrail answered for

    @property
    def latest(self) -> TrailEvent | None:
        return self.events[0] if self.events else None

    def redacted(self, redact: Callable[[str], str]) -> ResourceAttribution:
        """The same with every text CloudTrail gave passed through the run's redaction (it holds
        the role's credentials: an access key id must never name a session in the store)."""
        events = tuple(
            replace(
                event,
                principal_arn=redact(event.principal_arn),
                session_name=redact(event.session_name) if event.session_name else None,
                role_arn=redact(event.role_arn) if event.role_arn else None,
                source_ip=redact(event.source_ip),
                user_agent=redact(event.user_agent),
            )
            for event in self.events
        )
        unavailable = redact(self.unavailable) if self.unavailable else None
        return replace(self, events=events, unavailable=unavailable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "identifier": self.identifier,
            "events": [event.to_dict() for event in self.events],
            "unavailable": self.unavailable,
        }


def attribution_from_dict(data: Mapping[str, Any]) -> ResourceAttribution:
    """The inverse of `ResourceAttribution.to_dict`, for the store."""
    return ResourceAttribution(
        address=str(data.get("address", "")),
        events=tuple(TrailEvent.from_dict(event) for event in data.get("events") or ()),
        unavailable=data.get("unavailable"),
        identifier=data.get("identifier"),
    )


def changed_what(paths: Sequence[str]) -> str:
    """The top-level attributes a drift changed, for "ingress changed by …" ("" when none)."""
    names: list[str] = []
    for path in paths:
        top = path.split(".")[0].split("[")[0] or path
        if top not in names:
            names.append(top)
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def render_who(attribution: ResourceAttribution, changed: Sequence[str] = ()) -> str:
    """ "ingress changed by arn:… (AuthorizeSecurityGroupIngress, console, 2026-11-28 10:42 UTC)", or
    "attribution unavailable: <reason>"."""
    event = attribution.latest
    if event is None:
        return f"attribution unavailable: {attribution.unavailable or 'no events'}"
    who = event.principal_arn + (" (tfops)" if event.by_tfops else "")
    what = changed_what(changed)
    verb = f"{what} changed" if what else "changed"
    when = f"{event.time.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"{verb} by {who} ({event.event_name}, {event.agent}, {when})"


def render_line(attribution: ResourceAttribution, changed: Sequence[str] = ()) -> str:
    """One line for the drift summary and `tfops show`: "`address`: ingress changed by …"."""
    return f"`{attribution.address}`: {render_who(attribution, changed)}"
