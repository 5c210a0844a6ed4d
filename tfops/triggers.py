"""Webhook hints become fetches, few of them and soon.

A hint only says "the branch may have moved". The first one opens a short window; hints that
arrive inside it join the same fetch. Hints that arrive while a fetch is running cause exactly one
more fetch after it, so two merges in quick succession always end with the newest head fetched,
and a burst of fifty deliveries costs two fetches, not fifty.

However many hints pile up while a fetch runs, only the first and the last few are kept (with a
count of the rest): the trigger note needs no more, and a flood of deliveries costs no memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tfops.errors import TfopsError
from tfops.models import TriggerSource

log = logging.getLogger(__name__)

SHOWN_HINTS = 5  # hints a trigger note names; the rest are counted
KEPT_HINTS = 2 * SHOWN_HINTS  # the first and the last few of a batch are kept
_MAX_EVENT = 80  # event names are short words; a header can be kilobytes


@dataclass(frozen=True)
class FetchHint:
    """An authenticated delivery asking the daemon to fetch the branch now."""

    source: str  # "github" | "gitlab" | "gitea" | "generic"
    event: str  # "push", "pull_request", "Push Hook", "Merge Request Hook", "generic"
    delivery_id: str | None
    sha: str | None  # the payload's after/merge SHA (hex): for correlation, never trusted
    ref: str | None  # "refs/heads/<branch>" for host events, None for generic ones


class HintBatch(Sequence[FetchHint]):
    """The hints behind one fetch: the first and the last few that arrived, and how many in all."""

    def __init__(self, first: Sequence[FetchHint], last: Sequence[FetchHint] = (), total: int | None = None):
        self._kept = (*first, *last)
        self.total = len(self._kept) if total is None else total
        if self.total < len(self._kept):
            raise ValueError(f"a batch of {len(self._kept)} kept hints cannot have {self.total} in all")

    def __len__(self) -> int:
        return len(self._kept)

    def __getitem__(self, index):
        return self._kept[index]

    def __iter__(self) -> Iterator[FetchHint]:
        return iter(self._kept)

    def __repr__(self) -> str:
        return f"HintBatch({list(self._kept)!r}, total={self.total})"


class _PendingHints:
    """Hints waiting for the next fetch: the first and last `SHOWN_HINTS` of them, and a count."""

    def __init__(self) -> None:
        self.first: list[FetchHint] = []
        self.last: deque[FetchHint] = deque(maxlen=SHOWN_HINTS)
        self.total = 0

    def __bool__(self) -> bool:
        return self.total > 0

    def __len__(self) -> int:
        return len(self.first) + len(self.last)

    def add(self, hint: FetchHint) -> None:
        self.total += 1
        if len(self.first) < SHOWN_HINTS:
            self.first.append(hint)
        else:
            self.last.append(hint)

    def take(self) -> HintBatch:
        batch = HintBatch(self.first, self.last, self.total)
        self.first, self.last, self.total = [], deque(maxlen=SHOWN_HINTS), 0
        return batch


class FetchSoon:
    """The daemon's `FetchRequests`: `request_fetch` returns at once; one thread does the fetching."""

    def __init__(self, fetch: Callable[[HintBatch], None], *, window: float = 0.1) -> None:
        self.fetch = fetch
        self.window = window
        self._cond = threading.Condition()
        self._pending = _PendingHints()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.fetches = 0  # how many fetches the hints caused (for tests and logs)
        self._failing = False  # whether the last webhook-triggered fetch failed (only this thread sets it)

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

    @property
    def held_hints(self) -> int:
        """Hints kept in memory for the next fetch: at most `KEPT_HINTS`, however many arrived."""
        with self._cond:
            return len(self._pending)

    def request_fetch(self, hint: FetchHint) -> None:
        with self._cond:
            if self._stopping:
                return  # the next start polls anyway
            self._pending.add(hint)
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            hints = self._next_batch()
            if hints is None:
                return
            self.fetches += 1
            try:
                self.fetch(hints)
            except Exception as exc:  # noqa: BLE001 - logged; the next hint or tick retries
                self._failed(exc)
            else:
                self._succeeded()

    def _failed(self, exc: Exception) -> None:
        """WARNING for the first failure of a streak (a merge the webhook announced is not deployed
        yet), DEBUG while it goes on: a flood of deliveries must not flood the log too."""
        if self._failing:
            log.debug("a webhook-triggered fetch failed again: %s", exc, exc_info=True)
            return
        self._failing = True
        log.warning(
            "a webhook-triggered fetch failed; the next delivery or poll tries again: %s",
            exc,
            exc_info=None if isinstance(exc, TfopsError) else exc,
        )

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("webhook-triggered fetches work again")

    def _next_batch(self) -> HintBatch | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                return None
            window_ends = time.monotonic() + self.window
            while not self._stopping and (left := window_ends - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._stopping:
                return None
            return self._pending.take()


class Poller(Protocol):
    """What a batch of hints becomes (`RepoPoller.poll`): a fetch, and deploys of what changed."""

    def poll(self, source: TriggerSource, actor: str, *, note: str) -> object: ...


def fetch_for_webhooks(poller: Poller, hints: HintBatch) -> None:
    """`FetchSoon`'s fetch in the daemon: one poll, its deploys noting the deliveries behind it."""
    poller.poll(source=TriggerSource.WEBHOOK, actor=hints[-1].source, note=describe_hints(hints))


def describe_hints(hints: Sequence[FetchHint]) -> str:
    """What the webhook deliveries behind a fetch said, for the runs' trigger notes.

    The event name comes from a request header: what reaches the note is printable and carries no
    brackets, so no terminal or markup renderer of the note can be steered by a delivery.
    """
    total = hints.total if isinstance(hints, HintBatch) else len(hints)
    parts = []
    for hint in hints[:SHOWN_HINTS]:
        sha = f" says {hint.sha[:10]}" if hint.sha else ""
        delivery = f" {hint.delivery_id}" if hint.delivery_id else ""
        parts.append(_inert(f"{hint.source} {hint.event}")[:_MAX_EVENT] + _inert(f"{delivery}{sha}"))
    more = f" and {total - SHOWN_HINTS} more" if total > SHOWN_HINTS else ""
    return "webhook: " + ", ".join(parts) + more


def _inert(text: str) -> str:
    return "".join(char for char in text if char.isprintable() and char not in "[]")
