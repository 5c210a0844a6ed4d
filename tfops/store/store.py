"""The persistent record of tfops: stacks, runs, their status history, Slack delivery, approvals.

The store never sees a secret. Callers hand it summaries, errors and messages
that have already been through redaction (``tfops.terraform.plan``); it stores
what it is given verbatim and so must only ever be given redacted data.

Every method opens its own short transaction and returns plain dataclasses from
``tfops.models`` (or the store's own, such as :class:`RunEvent`), never ORM rows, so
no caller holds a session or a connection. One :class:`Store` (one engine, one
connection pool) is shared by every thread of the daemon.

:class:`Store` is the one facade; its methods live with their tables: ``engine.py``
(engine, sessions, migrations), ``stacks.py`` (stacks, meta), ``runs.py`` (runs and
their events, and the guarantee that a run ends in exactly one terminal status),
``outbox.py`` (Slack delivery and its ordering guarantees), ``decisions.py``
(approvals and the audit log), ``overview.py`` (every stack with its newest run, for listings),
``timers.py`` (set-based reads for the drift timers), ``deploys.py`` (every stack's deploy
facts in one read, for the poller), ``incidents.py`` (drift incidents) and ``instances.py``
(the daemons sharing the store). A new table gets its
own module and mixin, listed here.

Every public method of the mixins is wrapped (below) so that, in the daemon, a call cut off by a
PostgreSQL restart runs again once the server is back (``outages.py``).
"""

from __future__ import annotations

from tfops.store.decisions import AuditEntry, Decision, DecisionsMixin
from tfops.store.deploys import DeployFacts, DeploysMixin
from tfops.store.engine import MIGRATIONS_DIR, SQLITE_BUSY_TIMEOUT_MS, StoreBase, utc_now
from tfops.store.incidents import IncidentsMixin
from tfops.store.instances import InstancesMixin
from tfops.store.outages import wrap_public_methods
from tfops.store.outbox import (
    DEFAULT_CLAIM_LEASE,
    MAX_OUTBOX_ERROR_CHARS,
    OutboxItem,
    OutboxItemNotFound,
    OutboxItemNotPending,
    OutboxMixin,
    SlackMessage,
)
from tfops.store.overview import OverviewMixin
from tfops.store.runs import (
    SETTABLE_RUN_FIELDS,
    InvalidTransition,
    RunEvent,
    RunNotFound,
    RunsMixin,
    StackBusy,
)
from tfops.store.stacks import StackNotFound, StacksMixin
from tfops.store.timers import TimersMixin

__all__ = [
    "DEFAULT_CLAIM_LEASE",
    "MAX_OUTBOX_ERROR_CHARS",
    "MIGRATIONS_DIR",
    "SETTABLE_RUN_FIELDS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "AuditEntry",
    "Decision",
    "DeployFacts",
    "InvalidTransition",
    "OutboxItem",
    "OutboxItemNotFound",
    "OutboxItemNotPending",
    "RunEvent",
    "RunNotFound",
    "SlackMessage",
    "StackBusy",
    "StackNotFound",
    "Store",
    "utc_now",
]


class Store(
    StacksMixin,
    RunsMixin,
    OutboxMixin,
    DecisionsMixin,
    OverviewMixin,
    TimersMixin,
    DeploysMixin,
    IncidentsMixin,
    InstancesMixin,
):
    """SQLAlchemy-backed store; SQLite by default, PostgreSQL-ready schema.

    Only redacted data may be passed in: summaries, errors and messages are
    stored as given and are shown by the CLI and the status page.
    """


# In the daemon (outage_wait > 0) a store call cut off by a database restart runs again (outages.py).
wrap_public_methods(Store, StoreBase)
