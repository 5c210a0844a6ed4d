"""How the `tfops` command prints: its two consoles, its tables, a run's detail and its JSON.

Text that comes from outside tfops (stack names and paths from the repository, trigger actors and
notes from webhooks or API token names, Terraform's error output) is printed without rich markup.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from tfops.models import Run
from tfops.views import drift_markup, status_markup

if TYPE_CHECKING:
    from tfops.config import Settings
    from tfops.store.store import Decision, RunEvent

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_status(rows: list[dict[str, Any]], refused: list[dict[str, Any]]) -> None:
    """The `tfops status` table (rows from tfops.cli_status), then the refused stacks."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("stack", "path", "head", "applied", "drift", "last run", "next check"):
        table.add_column(column)
    ordered = any(row.get("depends_on") for row in rows)
    if ordered:  # only when some stack has upstreams: the table stays narrow otherwise
        table.add_column("after")
    for row in rows:
        last = row["last_run"]
        cells = [
            row["name"],
            row["path"],
            _head_cell(row),
            (row["applied_sha"] or "-")[:10],
            drift_markup(row["drift"]) + incident_note(row.get("incident")),
            f"#{last['id']} {last['kind']} {last['status']}" if last else "-",
            short_time(row["next_check"]),
        ]
        if ordered:
            cells.append(escape(", ".join(row.get("depends_on") or ())) or "-")  # applied before it
        table.add_row(*cells)
    # Never cut a cell to fit a narrow terminal (names and paths are identifiers): the table is
    # drawn at its natural width and the terminal wraps long lines, as `kubectl get` does.
    natural = Measurement.get(out, out.options.update_width(100_000), table).maximum
    width = out.width
    out.width = max(width, natural)  # print(width=) cannot go past the console's own width
    try:
        out.print(table)
    finally:
        out.width = width
    for row in rows:  # a deploy held behind its upstreams says for what (names: never markup)
        if row.get("waiting_for"):
            out.print(f"[yellow]waiting:[/yellow] {escape(row['name'])}: {escape(row['waiting_for'])}")
    print_refused(refused, out)


def _head_cell(row: dict[str, Any]) -> str:
    head = (row["head_sha"] or "-")[:10]
    if row["head_code_applied"] and row["head_sha"] != row["applied_sha"]:
        return f"{head} · code applied"  # e.g. a revert, or commits to other stacks only
    return head


def print_refused(refused: list[dict[str, Any]], console: Console = err) -> None:
    for item in refused:  # names and paths come from the repository: never markup
        text = f"stack {item['name']!r} (path {item['path']!r}) is refused: {item['detail']}"
        console.print(f"[red]refused:[/red] {escape(text)}")


def print_runs(found: Sequence[Run]) -> None:
    table = Table(show_edge=False, header_style="bold")
    for column in ("run", "stack", "kind", "status", "commit", "trigger", "finished"):
        table.add_column(column)
    for run in found:
        table.add_row(
            str(run.id),
            run.stack,
            run.kind.value,
            status_markup(run.status),
            (run.commit_sha or "-")[:10],
            run.trigger.source.value + (" (force-push)" if run.trigger.forced else ""),
            short_time(run.finished_at),
        )
    out.print(table)


def print_run_detail(run: Run, events: Iterable[RunEvent] | None, decisions: Iterable[Decision] = ()) -> None:
    from tfops.terraform.plan import render_text, summary_from_dict

    out.print(
        f"[bold]run {run.id}[/bold]  {run.stack}  {run.kind.value}  {status_markup(run.status)}  "
        f"commit {(run.commit_sha or '-')[:10]}"
    )
    out.print(  # actor and note may come from outside (a webhook, an API token's name): never markup
        f"trigger: {run.trigger.source.value} by {run.trigger.actor}"
        + (f" ({run.trigger.note})" if run.trigger.note else ""),
        markup=False,
    )
    if run.plan_sha256:
        out.print(f"plan sha256: {run.plan_sha256}")
    if run.summary:
        out.print(render_text(summary_from_dict(run.summary)), markup=False)
    if run.error:
        out.print("[red]error:[/red]")
        out.print(run.error, markup=False)
    for event in events or ():
        out.print(f"  {short_time(event.at)}  → {event.to_status.value}  {event.message}", markup=False)
    for decision in decisions:
        who = decision.actor_name or decision.actor_id
        out.print(
            f"  {short_time(decision.at)}  {decision.decision.value} by {who} ({decision.source.value}, "
            f"{decision.actor_id}): {decision.outcome.value}"
            + (f" — {decision.reason}" if decision.reason else ""),
            markup=False,
        )
    if run.log_path:
        out.print(f"log: {run.log_path}")


def incident_note(incident: dict[str, Any] | None) -> str:
    """The open drift incident under the drift state: since when, and how many resources."""
    if not incident:
        return ""
    count = len(incident["resources"])
    return f"\nincident since {short_time(incident['since'])}, {count} resource{'s' if count != 1 else ''}"


def short_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_role_checks(settings: Settings) -> bool:
    """Assume every configured AWS role once; print one line each. True when all could be."""
    from tfops.aws.check import check_roles  # boto3 only for this option

    checks = check_roles(settings, os.environ)
    if not checks:
        out.print("aws roles: none configured (stacks use tfops' own AWS identity)")
    for check in checks:
        uses = ", ".join(check.used_by)
        if check.problem is None:
            out.print(f"aws role {escape(check.role)} ({escape(uses)}): [green]assumed[/green]")
        else:
            out.print(f"aws role {escape(check.role)} ({escape(uses)}): [red]{escape(check.problem)}[/red]")
    return all(check.problem is None for check in checks)
