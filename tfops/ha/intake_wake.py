"""When an instance takes queued runs in (tfops.ha.intake): as soon as it has a free worker.

The heartbeat interval is the safety net: at least that often, whatever happens. Sooner:
- a worker of this instance's queue ended and nothing it holds can start (`RunQueue`'s `on_free`):
  the slot would otherwise sit idle until the next heartbeat while others' runs wait in the store;
- the last intake took runs in and a worker is still free: a batch (a sweep of hundreds of drift
  runs, queued one row at a time) may still be arriving, so it looks again after `soon` seconds.
  This short poll stops as soon as a look finds nothing, or every worker is busy: an idle instance,
  or a busy one, costs no more than the heartbeat's look.
Looks are at least `soon` apart, however often it is woken: a run that cannot start here (its
claim lost to another instance) ends its worker at once, and must not make the intake spin.
The store's claim (`queued -> planning`) still decides which instance runs each run; waking only
makes an instance ask sooner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

SOON = 0.25  # seconds between looks while runs keep arriving and workers are free


class Slots(Protocol):
    """What the wake asks of the queue: whether a worker is free with nothing held to start."""

    def has_free_slot(self) -> bool: ...


def next_look(*, took_in: int, free: bool, interval: float, soon: float = SOON) -> float:
    """Seconds until the next intake: soon while runs keep coming and a worker is free."""
    return soon if took_in and free else interval


class IntakeWake:
    """The event the intake thread waits on; `wake()` from any thread ends the wait."""

    def __init__(
        self,
        slots: Slots | None = None,
        *,
        soon: float = SOON,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.slots = slots
        self.soon = soon
        self.clock, self.sleep = clock, sleep
        self._event = threading.Event()
        self._last: float | None = None  # clock() at the last look
        self.wakes = 0  # how often something asked for an early look (for tests and benchmarks)

    def wake(self) -> None:
        self.wakes += 1
        self._event.set()

    def wait(self, took_in: int, interval: float) -> bool:
        """Wait until woken or the next look is due; True when woken."""
        free = self.slots is not None and self.slots.has_free_slot()
        woken = self._event.wait(next_look(took_in=took_in, free=free, interval=interval, soon=self.soon))
        self._event.clear()
        if woken and self._last is not None:
            rest = self.soon - (self.clock() - self._last)
            if rest > 0:
                self.sleep(rest)
        self._last = self.clock()
        return woken
