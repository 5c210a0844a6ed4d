"""``ha:``: several `tfops serve` daemons on one PostgreSQL database (failover and scale-out).

With SQLite there is one daemon per database file (a second one is refused); with PostgreSQL any
number of daemons, each with its own data directory, share the store and elect one leader.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field

from tfops.config.durations import PositiveDuration
from tfops.config.fields import Section

# Keepalives and lock checks are set in whole seconds: below this the arithmetic of the lease
# (see tfops.ha.leadership) has no room left.
MIN_FAILOVER = 3.0
MAX_FAILOVER = 600.0
# The heartbeat (and the leadership check) runs this many times per failover period.
BEATS_PER_FAILOVER = 5


class HaSettings(Section):
    """How the daemons sharing one PostgreSQL database find each other and elect a leader."""

    # An instance whose leader lock or heartbeat is this old is taken over (leader) or declared
    # dead (its running runs end `interrupted`, its claimed ones go back to the queue).
    failover: Annotated[PositiveDuration, Field(ge=MIN_FAILOVER, le=MAX_FAILOVER)] = 15.0
    # This daemon's name among the instances; default: the host name and a digest of data_dir, so
    # that a restarted daemon knows its own runs again.
    instance_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")] | None = None

    @property
    def heartbeat(self) -> float:
        return self.failover / BEATS_PER_FAILOVER

    def instance_for(self, data_dir: Path) -> str:
        """The configured instance id, or `<host>-<digest of data_dir>`."""
        if self.instance_id:
            return self.instance_id
        digest = hashlib.sha256(str(Path(data_dir).absolute()).encode()).hexdigest()[:8]
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:60] or "host"
        return f"{host}-{digest}"
