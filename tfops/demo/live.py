"""The demo's live console: every stack's state, and each run as it moves.

Statuses and drift wear the colours the CLI gives them (tfops.views), so the demo teaches the
same colours the operator will see from `tfops status` and `tfops runs`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tfops.notify import RunNotice
from tfops.store import Store
from tfops.views import drift_markup, status_markup


class LiveView:
    """A Notifier that keeps the latest run events, and a renderer over the store."""

    def __init__(self, store: Store, console: Console, *, events: int = 12) -> None:
        self.store = store
        self.console = console
        self._events: deque[str] = deque(maxlen=events)
        self._lock = threading.Lock()

    def run_changed(self, notice: RunNotice) -> None:
        run = notice.run
        counts = ""
        if notice.summary is not None and (notice.summary.has_changes or notice.summary.has_drift):
            c = notice.summary.counts
            counts = f" +{c['create']} ~{c['update']} -/+{c['replace']} -{c['delete']}"
            if notice.summary.drift:
                counts += f", {len(notice.summary.drift)} drifted"
        line = (
            f"{datetime.now():%H:%M:%S}  #{run.id} [bold]{escape(run.stack)}[/bold] {run.kind.value} "
            f"@{(run.commit_sha or '')[:7]} → {status_markup(run.status)}{counts}"
            + (f"  [dim]{escape(notice.message[:90])}[/dim]" if notice.message != run.status.value else "")
        )
        with self._lock:
            self._events.append(line)

    def render(self) -> Group:
        table = Table(title="stacks", title_justify="left", expand=True, header_style="bold")
        for column in ("stack", "applied", "drift", "last run"):
            table.add_column(column)
        for state in self.store.list_stacks():
            last = self.store.last_run(state.name)
            last_text = "-"
            if last is not None:
                last_text = f"#{last.id} {last.kind.value} {status_markup(last.status)}"
            table.add_row(
                escape(state.name),
                (state.applied_sha or "-")[:7],
                drift_markup(state.drift.value),
                last_text,
            )
        with self._lock:
            events = "\n".join(self._events) or "[dim]waiting for the first poll…[/dim]"
        return Group(table, Panel(events, title="runs", title_align="left"))

    @contextmanager
    def showing(self) -> Iterator[None]:
        with Live(get_renderable=self.render, console=self.console, refresh_per_second=2, transient=False):
            yield
