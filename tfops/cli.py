"""The `tfops` command.

Exit codes a script can rely on: 0 ok / in sync, 1 error, 2 changes or drift found.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tfops import __version__
from tfops.config import LogFormat, LogLevel
from tfops.errors import TfopsError
from tfops.models import FAILURE_STATUSES, DriftState, Run, RunKind, RunStatus

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Context:
    """What the shared options chose, filled in as they are parsed (see `_shared_options`)."""

    def __init__(
        self, config: Path | None = None, log_level: str | None = None, log_format: str | None = None
    ) -> None:
        self.config_path = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings = None
        self._store = None

    @property
    def settings(self):
        if self._settings is None:
            from tfops.config import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings

    def setup_logging(self) -> None:
        from tfops.logs import setup_logging

        settings = self.settings
        setup_logging(self.log_level or settings.log_level, self.log_format or settings.log_format)

    def app(self):
        from tfops.app import App

        self.setup_logging()
        return App(self.settings)

    def store(self):
        """The store, opened and migrated once per command (status reads it in several places)."""
        if self._store is None:
            from tfops.store import Store

            self._store = Store(self.settings.store_url)
            self._store.upgrade()
        return self._store


pass_ctx = click.make_pass_decorator(Context)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a shared option on the one Context. Options are parsed group first, then command,
    so a value given after the command name overrides one given before it."""
    if value is not None:
        setattr(ctx.ensure_object(Context), param.name or "", value)


def _shared_options() -> list[click.Option]:
    """--config, --log-level and --log-format: defined once, accepted by the group and by every
    command (`tfops -c X status` and `tfops status -c X`). New objects for each command, since
    click keeps per-parameter state."""
    return [
        click.Option(
            ["--config", "-c", "config_path"],
            type=click.Path(path_type=Path, dir_okay=False),
            expose_value=False,
            callback=_remember,
            # No envvar here: load_settings reads $TFOPS_CONFIG itself, and an envvar on every
            # command would override a --config given before the command name.
            help="tfops.yaml to use (default: $TFOPS_CONFIG, else ./tfops.yaml).",
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(get_args(LogLevel), case_sensitive=False),
            expose_value=False,
            callback=_remember,
            help="Overrides log_level.",
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(get_args(LogFormat), case_sensitive=False),
            expose_value=False,
            callback=_remember,
            help="Overrides log_format; json for journald/shippers.",
        ),
    ]


class TfopsCommand(click.Command):
    """A command that takes the shared options too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_shared_options())


class TfopsGroup(click.Group):
    """A group whose options, commands and sub-groups (`db upgrade`) all take the shared options."""

    command_class = TfopsCommand
    group_class = type  # sub-groups are TfopsGroups as well

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_shared_options())


@click.group(cls=TfopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfops")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """GitOps for Terraform: pull a Git repo of stacks, plan on a schedule, detect drift, apply."""
    ctx.ensure_object(Context)


@cli.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    ctx.app().serve()


@cli.command()
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@pass_ctx
def reconcile(ctx: Context, timeout: float | None) -> None:
    """One full pass: fetch, deploy what changed, drift-check every stack, exit.

    Exit 0 all in sync, 2 drift or changes left pending, 1 errors.
    """
    app = ctx.app()
    try:
        result = app.reconcile_once(timeout=timeout)
    finally:
        app.close()
    if result.fetch_error:
        err.print(f"[red]fetch failed:[/red] {result.fetch_error}")
    _print_refused([item.to_dict() for item in result.refused])
    _print_runs(result.runs)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("stack")
@pass_ctx
def plan(ctx: Context, stack: str) -> None:
    """Plan STACK at the branch head now and print the summary (exit 2 if it has changes)."""
    runs = _one_shot(ctx, RunKind.PLAN, [stack])
    sys.exit(_exit_for(runs, changes=lambda run: run.status is RunStatus.PLANNED))


@cli.command()
@click.argument("stack")
@pass_ctx
def deploy(ctx: Context, stack: str) -> None:
    """Deploy STACK at the branch head now, per its on_merge policy.

    For a person re-running a deploy that failed or was interrupted; tfops never
    retries those by itself.
    """
    runs = _one_shot(ctx, RunKind.DEPLOY, [stack])
    sys.exit(_exit_for(runs, changes=lambda run: run.status is RunStatus.PLANNED))


@cli.command()
@click.argument("stack", required=False)
@pass_ctx
def drift(ctx: Context, stack: str | None) -> None:
    """Check STACK (or every stack) for drift now (exit 2 if drift is found)."""
    runs = _one_shot(ctx, RunKind.DRIFT, [stack] if stack else None)
    sys.exit(_exit_for(runs, changes=_has_drift))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Stacks: head and applied commit, drift, last run, next drift check."""
    rows = _status_rows(ctx)
    refused = _with_refused(ctx, rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("stack", "path", "head", "applied", "drift", "last run", "next check"):
        table.add_column(column)
    for row in rows:
        last = row["last_run"]
        table.add_row(
            row["name"],
            row["path"],
            _head_cell(row),
            (row["applied_sha"] or "-")[:10],
            _drift_style(row["drift"]),
            f"#{last['id']} {last['kind']} {last['status']}" if last else "-",
            _short_time(row["next_check"]),
        )
    out.print(table)
    _print_refused(refused, out)


@cli.command()
@click.option("--stack", "-s", default=None, help="Only this stack.")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs(ctx: Context, stack: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    found = ctx.store().list_runs(stack=stack, limit=limit)
    if as_json:
        click.echo(json.dumps([_run_dict(run) for run in found], indent=2, default=str))
        return
    _print_runs(found)


@cli.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(ctx: Context, run_id: int, as_json: bool) -> None:
    """One run: its record, redacted plan summary, events, and log path."""
    store = ctx.store()
    run = store.get_run(run_id)
    if run is None:
        err.print(f"no run {run_id}")
        sys.exit(EXIT_ERROR)
    events = store.events(run_id)
    decisions = store.decisions(run_id)
    if as_json:
        data = _run_dict(run) | {
            "summary": run.summary,
            "events": [_event_dict(e) for e in events],
            "decisions": [_decision_dict(d) for d in decisions],
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_run_detail(run, events, decisions)


@cli.command()
@click.argument("run_id", type=click.IntRange(1))
@pass_ctx
def approve(ctx: Context, run_id: int) -> None:
    """Approve RUN_ID (awaiting approval) as the local user; on the last approval, apply its plan.

    The same checks as a Slack click: the run must be awaiting approval, and the branch head must
    still carry the code that was planned, with the saved plan unchanged. Exit 0 once applied, or
    when the approval counted and more are needed; 1 otherwise.
    """
    _decide(ctx, run_id, "approve")


@cli.command()
@click.argument("run_id", type=click.IntRange(1))
@pass_ctx
def reject(ctx: Context, run_id: int) -> None:
    """Reject RUN_ID (awaiting approval) as the local user: nothing is applied."""
    _decide(ctx, run_id, "reject")


def _decide(ctx: Context, run_id: int, decision: str) -> None:
    from tfops.app import local_user
    from tfops.approvals import DecisionRequest, Verdict
    from tfops.models import DecisionKind, DecisionSource

    app = ctx.app()
    user = local_user()
    request = DecisionRequest(
        run_id=run_id,
        decision=DecisionKind(decision),
        actor_id=user,
        actor_name=user,
        source=DecisionSource.CLI,
    )
    try:
        answer, run = app.decide(request)
    finally:
        app.close()
    out.print(answer.text, markup=False)
    if run is not None:
        _print_run_detail(run, None)
    ok = answer.verdict in (Verdict.COUNT, Verdict.REJECT) or (
        answer.verdict is Verdict.APPROVE and run is not None and run.status is RunStatus.APPLIED
    )
    sys.exit(EXIT_OK if ok else EXIT_ERROR)


@cli.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--once",
    is_flag=True,
    help="Run the demo's story unattended (apply, drift, push, broken push), print a report and exit "
    "0 only if every step behaved. DIR defaults to a temporary folder.",
)
def demo(directory: Path | None, once: bool) -> None:
    """An offline GitOps setup in DIR (default ./tfops-demo), with the daemon running on it.

    Builds a Git remote seeded with the example stacks, a working clone to push from, the demo
    provider's "cloud" folder and a Terraform CLI config, then runs `tfops serve` with a live view.
    Running it again on the same DIR resumes. --config is ignored: the demo writes its own.
    """
    from tfops.demo.run import interactive
    from tfops.demo.run import once as run_once

    if once:
        sys.exit(run_once(directory, out))
    sys.exit(interactive(directory or Path("tfops-demo"), out))


@cli.command("check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the configuration and print what tfops will do with it.

    Runs every check `tfops serve` runs before it starts: exit 0 means the daemon will start.
    """
    from tfops.app import check_startable
    from tfops.config import describe, warnings

    settings = ctx.settings
    out.print(describe(settings), markup=False)
    # Every secret `serve` will read, read now: a missing one is found here, not at start.
    binary = check_startable(settings, os.environ)
    out.print(f"terraform binary: {binary}", markup=False)
    for warning in [*warnings(settings), *_refused_in_checkout(settings)]:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print("[green]configuration OK[/green]")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending schema migrations (serve does this at start)."""
    ctx.store()
    out.print("database schema is up to date")


# -- helpers ------------------------------------------------------------------------


def _one_shot(ctx: Context, kind: RunKind, stacks: list[str] | None) -> list[Run]:
    app = ctx.app()
    try:
        found = app.one_shot(kind, stacks)
    finally:
        app.close()
    if not found:
        err.print("no run was queued (a stack that tfops never applied gets its deploy first)")
    for run in found:
        _print_run_detail(run, None)
    return found


def _exit_for(runs: list[Run], *, changes) -> int:
    if not runs or any(run.status in FAILURE_STATUSES for run in runs):
        return EXIT_ERROR
    return EXIT_CHANGES if any(changes(run) for run in runs) else EXIT_OK


def _has_drift(run: Run) -> bool:
    summary = run.summary or {}
    return (
        bool(summary.get("drift"))
        or run.status is RunStatus.PLANNED
        or (run.kind is RunKind.DRIFT and run.status is RunStatus.APPLIED)
    )


def _head_cell(row: dict[str, Any]) -> str:
    head = (row["head_sha"] or "-")[:10]
    if row["head_code_applied"] and row["head_sha"] != row["applied_sha"]:
        return f"{head} · code applied"  # e.g. a revert, or commits to other stacks only
    return head


def _head_code_applied(state, record: dict[str, Any]) -> bool | None:
    """Is the stack's code at the head the code it was applied with? From what the poller
    `record`ed for its last head (no git diff here); None when it recorded nothing for this head."""
    if state.head_sha is None or state.applied_sha is None:
        return False if state.head_sha else None
    if state.head_sha == state.applied_sha:
        return True
    if record.get("head") != state.head_sha:
        return None
    return state.name in record.get("stacks", ())


def _status_rows(ctx: Context) -> list[dict[str, Any]]:
    from tfops.scheduler import HEAD_CODE_APPLIED

    store = ctx.store()
    intervals = _drift_intervals(ctx)
    head_code = store.get_meta(HEAD_CODE_APPLIED) or {}
    rows = []
    for state in store.list_stacks():
        last = store.last_run(state.name)
        interval = intervals.get(state.name)
        next_check = None
        if interval:
            base = state.drift_checked_at or datetime.now(UTC)
            next_check = base + timedelta(seconds=interval)
        rows.append(
            {
                "name": state.name,
                "path": state.path,
                "head_sha": state.head_sha,
                "applied_sha": state.applied_sha,
                "head_code_applied": _head_code_applied(state, head_code),
                "drift": state.drift.value,
                "drift_checked_at": state.drift_checked_at,
                "last_run": {"id": last.id, "kind": last.kind.value, "status": last.status.value}
                if last
                else None,
                "next_check": next_check,
            }
        )
    return rows


def _drift_intervals(ctx: Context) -> dict[str, float]:
    """Drift intervals from the stacks discovered in the current checkout, if there is one."""
    found = _discover_in_checkout(ctx.settings)
    return {stack.name: stack.drift_interval for stack in found.stacks} if found else {}


def _discover_in_checkout(settings):
    """The stacks (and refusals) in the daemon's checkout, as of its last fetch; None without one."""
    from tfops.stacks import discover

    if not (Path(settings.checkout_dir) / ".git").exists():
        return None
    return discover(Path(settings.checkout_dir), settings.stacks, settings.defaults)


def _refused_in_checkout(settings) -> list[str]:
    """check-config: the stacks the daemon would refuse at the head it last fetched (none without a
    checkout). Warnings, not errors: the daemon starts and deploys the other stacks."""
    found = _discover_in_checkout(settings)
    if found is None:
        return []
    return [f"{item} — it will not be planned\n  hint: {item.hint}" for item in found.refused]


def _with_refused(ctx: Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the stacks refused at the head the daemon last worked out (recorded by its poller) on
    `rows`, adding a row for each refused stack the store never knew; returns the refusals."""
    from tfops.scheduler import REFUSED_STACKS_META

    recorded = ctx.store().get_meta(REFUSED_STACKS_META) or {}
    refused = [{**item, "head_sha": recorded.get("head")} for item in recorded.get("stacks", [])]
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        row["refused"] = None
    for item in refused:
        found = by_name.get(item["name"])
        if found is not None:
            row = found
        else:  # never planned: it was refused since it first appeared
            row = dict.fromkeys(_STATUS_KEYS) | {"name": item["name"], "path": item["path"]}
            row |= {"head_sha": item["head_sha"], "drift": "refused"}
            rows.append(row)
        row["refused"] = {"reason": item["reason"], "detail": item["detail"]}
    rows.sort(key=lambda row: row["name"])
    return refused


_STATUS_KEYS = (
    *("name", "path", "head_sha", "applied_sha", "head_code_applied"),
    *("drift", "drift_checked_at", "last_run", "next_check"),
)


def _print_refused(refused: list[dict[str, Any]], console: Console = err) -> None:
    for item in refused:  # names and paths come from the repository: never markup
        text = f"stack {item['name']!r} (path {item['path']!r}) is refused: {item['detail']}"
        console.print(f"[red]refused:[/red] {escape(text)}")


def _run_dict(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "stack": run.stack,
        "kind": run.kind.value,
        "status": run.status.value,
        "commit_sha": run.commit_sha,
        "trigger": run.trigger.to_dict(),
        "plan_sha256": run.plan_sha256,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "exit_code": run.exit_code,
        "error": run.error,
        "log_path": run.log_path,
        "decided_by": run.decided_by,
    }


def _event_dict(event) -> dict[str, Any]:
    return {
        "at": event.at,
        "from": event.from_status.value if event.from_status else None,
        "to": event.to_status.value,
        "message": event.message,
    }


def _print_runs(found: list[Run]) -> None:
    table = Table(show_edge=False, header_style="bold")
    for column in ("run", "stack", "kind", "status", "commit", "trigger", "finished"):
        table.add_column(column)
    for run in found:
        table.add_row(
            str(run.id),
            run.stack,
            run.kind.value,
            _status_style(run.status),
            (run.commit_sha or "-")[:10],
            run.trigger.source.value + (" (force-push)" if run.trigger.forced else ""),
            _short_time(run.finished_at),
        )
    out.print(table)


def _decision_dict(decision) -> dict[str, Any]:
    return {
        "decision": decision.decision.value,
        "outcome": decision.outcome.value,
        "actor_id": decision.actor_id,
        "actor_name": decision.actor_name,
        "source": decision.source.value,
        "at": decision.at,
        "commit_sha": decision.commit_sha,
        "plan_sha256": decision.plan_sha256,
        "reason": decision.reason,
    }


def _print_run_detail(run: Run, events, decisions=()) -> None:
    from tfops.terraform.plan import render_text, summary_from_dict

    out.print(
        f"[bold]run {run.id}[/bold]  {run.stack}  {run.kind.value}  {_status_style(run.status)}  "
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
        out.print(f"  {_short_time(event.at)}  → {event.to_status.value}  {event.message}", markup=False)
    for decision in decisions:
        who = decision.actor_name or decision.actor_id
        out.print(
            f"  {_short_time(decision.at)}  {decision.decision.value} by {who} ({decision.source.value}, "
            f"{decision.actor_id}): {decision.outcome.value}"
            + (f" — {decision.reason}" if decision.reason else ""),
            markup=False,
        )
    if run.log_path:
        out.print(f"log: {run.log_path}")


_STATUS_COLOURS = {RunStatus.APPLIED: "green", RunStatus.NO_CHANGES: "green", RunStatus.PLANNED: "yellow"}


def status_colour(status: RunStatus) -> str | None:
    """Every failure is red; the few good or pending outcomes have their colour."""
    return "red" if status in FAILURE_STATUSES else _STATUS_COLOURS.get(status)


def _status_style(status: RunStatus) -> str:
    colour = status_colour(status)
    return f"[{colour}]{status.value}[/{colour}]" if colour else status.value


_DRIFT_COLOURS = {
    DriftState.IN_SYNC.value: "green",
    DriftState.DRIFTED.value: "yellow",
    DriftState.PENDING.value: "cyan",
}


def _drift_style(drift: str) -> str:
    colour = _DRIFT_COLOURS.get(drift, "dim")
    return f"[{colour}]{drift}[/{colour}]"


def _short_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        # Usage errors exit 1, not click's 2: 2 means "changes found" for plan/drift.
        sys.exit(EXIT_ERROR)
    except click.Abort:
        err.print("aborted")
        sys.exit(EXIT_ERROR)
    except TfopsError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
