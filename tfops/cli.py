"""The `tfops` command.

Exit codes a script can rely on: 0 ok / in sync, 1 error, 2 changes or drift found.

The reading commands (status, runs, show) must answer at once, so this module imports only click
and tfops' light modules at the top; each command imports what it needs (rich for tables, the
app, the web server, Git) inside it. tests/unit/test_cli_startup.py keeps it so.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, get_args

import click

from tfops import __version__
from tfops.cli_context import Context
from tfops.cli_status import drift_records, instance_lines, status_rows, with_refused
from tfops.errors import TfopsError
from tfops.logs import LogFormat, LogLevel
from tfops.models import FAILURE_STATUSES, Run, RunKind, RunStatus
from tfops.views import run_detail_record, run_record
from tfops.views import status_colour as status_colour  # re-exported: tests read the CLI's colours

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

# Commands that only read the store: they start no child process (see `cli`).
READING_COMMANDS = frozenset({"status", "runs", "show"})


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
        # No envvar here: load_settings reads $TFOPS_CONFIG itself, and an envvar on every
        # command would override a --config given before the command name.
        _shared_option(
            ["--config", "-c", "config_path"],
            click.Path(path_type=Path, dir_okay=False),
            "tfops.yaml to use (default: $TFOPS_CONFIG, else ./tfops.yaml).",
        ),
        _shared_option(["--log-level"], _choice(LogLevel), "Overrides log_level."),
        _shared_option(
            ["--log-format"], _choice(LogFormat), "Overrides log_format; json for journald/shippers."
        ),
    ]


def _shared_option(declarations: list[str], kind: click.ParamType, help: str) -> click.Option:
    return click.Option(declarations, type=kind, expose_value=False, callback=_remember, help=help)


def _choice(literal: Any) -> click.Choice:
    return click.Choice(get_args(literal), case_sensitive=False)


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
    if ctx.invoked_subcommand not in READING_COMMANDS:
        from tfops.proc import restore_sigint

        restore_sigint()  # before any child: started in the background, SIGINT may be ignored


@cli.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run the daemon until SIGTERM or SIGINT (SIGUSR1 writes every thread's stack to stderr)."""
    import faulthandler
    import signal

    # A daemon that seems stuck can be looked into without a debugger or a restart.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    ctx.app().serve()


@cli.command()
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@pass_ctx
def reconcile(ctx: Context, timeout: float | None) -> None:
    """One full pass: fetch, deploy what changed, drift-check every stack, exit.

    Exit 0 all in sync, 2 drift or changes left pending, 1 errors.
    """
    from tfops.cli_render import err, print_refused, print_runs

    app = ctx.app()
    try:
        result = app.reconcile_once(timeout=timeout)
    finally:
        app.close()
    if result.fetch_error:
        err.print(f"[red]fetch failed:[/red] {result.fetch_error}")
    print_refused([item.to_dict() for item in result.refused])
    print_runs(result.runs)
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
@click.option(
    "--allow-destroy",
    is_flag=True,
    help="Apply even past the stack's change guards (recorded on the run as an override).",
)
@click.option(
    "--override-window",
    is_flag=True,
    help="Apply now, outside the stack's sync windows (recorded on the run as an override).",
)
@pass_ctx
def deploy(ctx: Context, stack: str, allow_destroy: bool, override_window: bool) -> None:
    """Deploy STACK at the branch head now, per its on_merge policy.

    For a person re-running a deploy that failed or was interrupted; tfops never
    retries those by itself.
    """
    runs = _one_shot(
        ctx, RunKind.DEPLOY, [stack], allow_destroy=allow_destroy, override_window=override_window
    )
    sys.exit(_exit_for(runs, changes=lambda run: run.status in _LEFT_PENDING))


# A deploy that ends here leaves its change undeployed: exit 2.
_LEFT_PENDING = frozenset({RunStatus.PLANNED, RunStatus.BLOCKED, RunStatus.AWAITING_WINDOW})


@cli.command()
@click.argument("stack", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the runs as a JSON list, each with its stack's incident."
)
@pass_ctx
def drift(ctx: Context, stack: str | None, as_json: bool) -> None:
    """Check STACK (or every stack) for drift now (exit 2 if drift is found)."""
    runs = _one_shot(ctx, RunKind.DRIFT, [stack] if stack else None, show=not as_json)
    if as_json:
        click.echo(json.dumps(drift_records(ctx.store(), runs), indent=2, default=str))
    sys.exit(_exit_for(runs, changes=_has_drift))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Stacks: head and applied commit, drift, last run, next drift check."""
    rows = status_rows(ctx.reader(), ctx.view())
    refused = with_refused(ctx.reader(), rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from tfops.cli_render import print_status

    print_status(rows, refused)
    for line in instance_lines(ctx.reader(), failover=ctx.view().ha_failover):  # tfops.ha
        click.echo(line)


@cli.command()
@click.option("--stack", "-s", default=None, help="Only this stack.")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs(ctx: Context, stack: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    found = ctx.reader().list_runs(stack=stack, limit=limit)
    if as_json:
        click.echo(json.dumps([run_record(run) for run in found], indent=2, default=str))
        return
    from tfops.cli_render import print_runs

    print_runs(found)


@cli.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(ctx: Context, run_id: int, as_json: bool) -> None:
    """One run: its record, redacted plan summary, events, and log path."""
    store = ctx.reader()
    run = store.get_run(run_id)
    if run is None:
        click.echo(f"no run {run_id}", err=True)
        sys.exit(EXIT_ERROR)
    events = store.events(run_id)
    decisions = store.decisions(run_id)
    if as_json:
        data = run_detail_record(run, events, decisions)
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from tfops.cli_render import print_run_detail

    print_run_detail(run, events, decisions)


@cli.command()
@click.argument("run_id", type=click.IntRange(1))
@pass_ctx
def approve(ctx: Context, run_id: int) -> None:
    """Approve RUN_ID (awaiting approval) as the local user; on the last approval, apply its plan.

    The same checks as a Slack click: the run must be awaiting approval, and the branch head must
    still carry the code that was planned, with the saved plan unchanged. Exit 0 once applied (or
    waiting for the stack's sync window), or when the approval counted and more are needed; 1
    otherwise.
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
    from tfops.cli_render import out, print_run_detail
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
        print_run_detail(run, None)
    ok = answer.verdict in (Verdict.COUNT, Verdict.REJECT) or (
        # applied, or approved outside the sync windows: it applies when one opens
        answer.verdict is Verdict.APPROVE
        and run is not None
        and run.status in (RunStatus.APPLIED, RunStatus.AWAITING_WINDOW)
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
    from tfops.cli_render import out
    from tfops.demo.run import interactive
    from tfops.demo.run import once as run_once

    if once:
        sys.exit(run_once(directory, out))
    sys.exit(interactive(directory or Path("tfops-demo"), out))


@cli.command("check-config")
@click.option(
    "--aws", "check_aws", is_flag=True, help="Also assume every configured AWS role once and report failures."
)
@pass_ctx
def check_config(ctx: Context, check_aws: bool) -> None:
    """Validate the configuration and print what tfops will do with it.

    Runs every check `tfops serve` runs before it starts: exit 0 means the daemon will start.
    With --aws, every role is also assumed once with tfops' own AWS identity.
    """
    from rich.markup import escape

    from tfops.app import check_startable
    from tfops.cli_render import out, print_role_checks
    from tfops.cli_status import refused_in_checkout
    from tfops.config import describe, warnings
    from tfops.ha.pinning import refuse_in_checkout

    settings = ctx.settings
    out.print(describe(settings), markup=False)
    # Every secret `serve` will read, read now: a missing one is found here, not at start.
    binary = check_startable(settings, os.environ)
    out.print(f"terraform binary: {binary}", markup=False)
    for warning in [*warnings(settings), *refused_in_checkout(settings)]:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    refuse_in_checkout(settings)  # several daemons: stacks with local state stop `serve` (an error)
    if check_aws and not print_role_checks(settings):
        raise TfopsError("some AWS roles cannot be assumed (above)")
    out.print("[green]configuration OK[/green]")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending schema migrations (serve does this at start)."""
    ctx.store()
    click.echo("database schema is up to date")


# -- helpers ------------------------------------------------------------------------


def _one_shot(
    ctx: Context,
    kind: RunKind,
    stacks: list[str] | None,
    *,
    allow_destroy: bool = False,
    override_window: bool = False,
    show: bool = True,
) -> list[Run]:
    from tfops.cli_render import err, print_run_detail

    app = ctx.app()
    try:
        found = app.one_shot(kind, stacks, allow_destroy=allow_destroy, override_window=override_window)
    finally:
        app.close()
    if not found:
        err.print("no run was queued (a stack that tfops never applied gets its deploy first)")
    for run in found if show else ():
        print_run_detail(run, None)
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
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except TfopsError as exc:
        from rich.markup import escape

        from tfops.cli_render import err

        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
