"""A webhook that reaches a follower reaches the leader: through a row the leader reads.

Behind a load balancer a webhook may land on any instance. Only the leader polls, so a follower
records the hint (`meta` key `ha_fetch_hint`: when, from which forge, what the deliveries said)
and the leader, which looks at that row every heartbeat interval, polls once for each new hint.
The row is a hint, like the webhook itself: it only ever causes a fetch. Alternatives: forwarding
the request to the leader (its address must then be known and reachable from every instance),
or PostgreSQL's LISTEN/NOTIFY (a second long-lived connection per instance, and a notification
sent while the leader changes is lost, where the row waits for the next leader).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from tfops.models import TriggerSource
from tfops.store import Store
from tfops.triggers import HintBatch, describe_hints

log = logging.getLogger(__name__)

FETCH_HINT_META = "ha_fetch_hint"


class Polling(Protocol):
    """`RepoPoller.poll`: fetch, and queue what changed."""

    def poll(self, source: TriggerSource = ..., actor: str = ..., *, note: str = ...) -> object: ...


class HintRelay:
    """`FetchSoon`'s fetch in a daemon that shares its store: the leader polls now; a follower
    leaves the hint in the store for the leader (`check`, on the leader, every beat)."""

    def __init__(self, store: Store, poller: Polling, leading: Callable[[], bool]) -> None:
        self.store = store
        self.poller = poller
        self.leading = leading
        self._seen: Any = None  # the last hint row the leader acted on

    def __call__(self, hints: HintBatch) -> None:
        note = describe_hints(hints)
        if self.leading():
            self.poller.poll(source=TriggerSource.WEBHOOK, actor=hints[-1].source, note=note)
            return
        hint = {"at": datetime.now(UTC).isoformat(), "source": hints[-1].source, "note": note}
        self.store.set_meta(FETCH_HINT_META, hint)
        log.info("webhook hint on a follower: left for the leader (%s)", note)

    def check(self) -> bool:
        """On the leader: poll once if a follower left a hint not acted on yet; True if it did."""
        if not self.leading():
            return False
        hint = self.store.get_meta(FETCH_HINT_META)
        if hint is None or hint == self._seen:
            return False
        first_look = self._seen is None
        self._seen = hint
        if first_look and self._stale(hint):
            return False  # older than this leadership's first poll, which fetched anyway
        self.poller.poll(
            source=TriggerSource.WEBHOOK, actor=str(hint.get("source", "webhook")), note=hint.get("note", "")
        )
        return True

    def _stale(self, hint: dict[str, Any]) -> bool:
        try:
            at = datetime.fromisoformat(hint["at"])
        except (KeyError, TypeError, ValueError):
            return True
        return (datetime.now(UTC) - at).total_seconds() > 60
