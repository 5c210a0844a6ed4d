"""Telling people what runs did.

A notifier hears about a run only after its new status is persisted (principle 3:
the record comes first). Notifiers must never raise into a run: a broken chat
integration cannot fail a deploy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tfops.incidents import IncidentChange
from tfops.models import PlanSummary, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunNotice:
    run: Run
    message: str  # the reason for this status, already redacted
    summary: PlanSummary | None = None


class Notifier(Protocol):
    def run_changed(self, notice: RunNotice) -> None: ...


@runtime_checkable
class IncidentNotifier(Protocol):
    """A notifier that also hears of drift incidents (tfops.incidents)."""

    def incident_changed(self, change: IncidentChange) -> None: ...


class MultiNotifier:
    """Fan out to several notifiers; one failing does not silence the others."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = list(notifiers)

    def add(self, notifier: Notifier) -> None:
        self.notifiers.append(notifier)

    def run_changed(self, notice: RunNotice) -> None:
        for notifier in self.notifiers:
            try:
                notifier.run_changed(notice)
            except Exception:
                log.exception("notifier %s failed for run %s", type(notifier).__name__, notice.run.id)

    def incident_changed(self, change: IncidentChange) -> None:
        for notifier in self.notifiers:
            if not isinstance(notifier, IncidentNotifier):
                continue
            try:
                notifier.incident_changed(change)
            except Exception:
                log.exception(
                    "notifier %s failed for incident %s", type(notifier).__name__, change.incident.id
                )
