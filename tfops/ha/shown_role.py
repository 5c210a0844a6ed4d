"""The role a reader shows for an instance: its row's role, unless it has been silent too long.

A killed leader's row in `instances` still reads `leader` until the new leader settles it (between
one and two `failover` periods later, tfops.ha.instances): for that while two rows would read
`leader`. `tfops status` and `/readyz` show an instance whose heartbeat is older than `failover`
as presumed dead instead, whatever its row says. Pure: data in, a word out.
"""

from __future__ import annotations

from datetime import datetime

from tfops.models import Instance

PRESUMED_DEAD = "presumed dead"


def is_silent(instance: Instance, now: datetime, failover: float | None) -> bool:
    """Whether `instance` has not beaten for longer than `failover` (never, without one)."""
    return failover is not None and (now - instance.heartbeat_at).total_seconds() > failover


def shown_role(instance: Instance, now: datetime, failover: float | None) -> str:
    """`leader` or `follower` as its row says, or `presumed dead` once it is silent."""
    return PRESUMED_DEAD if is_silent(instance, now, failover) else instance.role.value
