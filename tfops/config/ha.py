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
# What an instance id may be: it is shown in logs, metrics labels and `tfops status`.
INSTANCE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


class HaSettings(Section):
    """How the daemons sharing one PostgreSQL database find each other and elect a leader."""

    # An instance whose leader lock or heartbeat is this old is taken over (leader) or declared
    # dead (its running runs end `interrupted`, its claimed ones go back to the queue).
    failover: Annotated[PositiveDuration, Field(ge=MIN_FAILOVER, le=MAX_FAILOVER)] = 15.0
    # This daemon's name among the instances; default: the host name and a digest of data_dir, so
    # that a restarted daemon knows its own runs again.
    instance_id: Annotated[str, Field(pattern=INSTANCE_ID)] | None = None
    # The one instance that runs the stacks with local state (no backend block), by its id: the
    # others never take their runs (tfops.ha.pinning). None: `tfops serve` refuses to start while
    # the checkout has such a stack, and a run of one that arrives later fails, saying why.
    local_state_instance: Annotated[str, Field(pattern=INSTANCE_ID)] | None = None

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

    def runs_local_state(self, data_dir: Path) -> bool:
        """Whether this instance may give stacks local state: it is the one `local_state_instance`
        names (with several daemons; on one VM every stack may keep its state locally)."""
        pinned_to = self.local_state_instance
        return pinned_to is not None and pinned_to == self.instance_for(data_dir)
