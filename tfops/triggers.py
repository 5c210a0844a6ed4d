"""Webhook hints become fetches, few of them and soon.

A hint only says "the branch may have moved". The first one opens a short window; hints that
arrive inside it join the same fetch. Hints that arrive while a fetch is running cause exactly one
more fetch after it, so two merges in quick succession always end with the newest head fetched,
and a burst of fifty deliveries costs two fetches, not fifty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from tfops.web.webhooks import FetchHint

log = logging.getLogger(__name__)


class FetchSoon:
    """The daemon's `FetchRequests`: `request_fetch` returns at once; one thread does the fetching."""

    def __init__(self, fetch: Callable[[Sequence[FetchHint]], None], *, window: float = 0.1) -> None:
        self.fetch = fetch
        self.window = window
        self._cond = threading.Condition()
        self._pending: list[FetchHint] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.fetches = 0  # how many fetches the hints caused (for tests and logs)

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tfops-webhook-fetch", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def request_fetch(self, hint: FetchHint) -> None:
        with self._cond:
            if self._stopping:
                return  # the next start polls anyway
            self._pending.append(hint)
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            hints = self._next_batch()
            if hints is None:
                return
            self.fetches += 1
            try:
                self.fetch(hints)
            except Exception:
                # The poller logs and records fetch failures itself; the next hint or tick retries.
                log.debug("a webhook-triggered fetch failed", exc_info=True)

    def _next_batch(self) -> list[FetchHint] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                return None
            window_ends = time.monotonic() + self.window
            while not self._stopping and (left := window_ends - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._stopping:
                return None
            hints, self._pending = self._pending, []
            return hints


def describe_hints(hints: Sequence[FetchHint]) -> str:
    """What the webhook deliveries behind a fetch said, for the runs' trigger notes (not trusted)."""
    parts = []
    for hint in hints[:5]:
        sha = f" says {hint.sha[:10]}" if hint.sha else ""
        delivery = f" {hint.delivery_id}" if hint.delivery_id else ""
        parts.append(f"{hint.source} {hint.event}{delivery}{sha}")
    more = f" and {len(hints) - 5} more" if len(hints) > 5 else ""
    return "webhook: " + ", ".join(parts) + more
