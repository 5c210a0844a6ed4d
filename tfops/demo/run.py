"""Entry points of `tfops demo`: the live daemon, and the unattended `--once` story."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tfops.app import App
from tfops.config import load_settings
from tfops.demo.live import LiveView
from tfops.demo.setup import DemoLayout, prepare
from tfops.demo.story import Story
from tfops.logs import setup_logging


def interactive(directory: Path, console: Console) -> int:
    layout, resumed = prepare(directory)
    _log_to_file(layout)
    app = _app(layout)
    view = LiveView(app.store, console)
    app.notifier.add(view)
    console.print(_instructions(layout, resumed, status_page_url(app.settings.http.listen)))
    with view.showing():
        app.serve()
    console.print(f"stopped. Everything is kept in {layout.root}; run the same command to resume.")
    return 0


def once(directory: Path | None, console: Console) -> int:
    """Run the story in `directory` (or a temporary folder) and report; 0 only if all steps pass."""
    temporary = directory is None
    root = Path(tempfile.mkdtemp(prefix="tfops-demo-")) if directory is None else directory
    try:
        layout, resumed = prepare(root)
        if resumed:
            console.print(
                f"[red]{escape(str(layout.root))} holds an earlier demo; --once needs a new folder[/red]"
            )
            return 1
        _log_to_file(layout)
        app = _app(layout)
        try:
            console.print(f"tfops demo --once in {layout.root}")
            steps = Story(layout, app, lambda line: console.print(line, markup=False)).run()
        finally:
            app.close()
        passed = sum(step.ok for step in steps)
        verdict = (
            "[green]every step behaved as expected[/green]" if passed == 6 else "[red]some steps failed[/red]"
        )
        console.print(f"{passed}/6 steps passed: {verdict}. Log: {layout.log}")
        return 0 if passed == 6 else 1
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _app(layout: DemoLayout) -> App:
    # The demo ignores TFOPS_* from the shell: they belong to the user's real configuration.
    return App(load_settings(layout.config, environ={}), environ=dict(os.environ))


def _log_to_file(layout: DemoLayout) -> None:
    # The console belongs to the live view; the daemon's log goes to a file beside it.
    setup_logging("info", "text", logging.FileHandler(layout.log))


def status_page_url(listen: str | None) -> str | None:
    """The demo's status page (http.listen on loopback, written by `prepare`)."""
    return f"http://{listen}/" if listen else None


def _instructions(layout: DemoLayout, resumed: bool, page: str | None = None) -> str:
    q = shlex.quote
    cloud, work, config = q(str(layout.cloud)), q(str(layout.work)), q(str(layout.config))
    start = "Resuming the demo" if resumed else "Demo ready"
    return f"""[bold]{start} in {escape(str(layout.root))}[/bold]
tfops polls {escape(str(layout.remote))} every 3 s and checks every stack for drift every ~15 s.
{f"Status page: [bold]{escape(page)}[/bold] (open it in a browser; it updates by itself)" if page else ""}

Three things to try, in another terminal:

 1. [bold]Drift[/bold]: change the "cloud" behind Terraform's back.
      rm {cloud}/web-replica-0.json                 # web (remediate): re-created by itself
      sed -i 's/api v1/by hand/' {cloud}/api-config.json  # api (notify): reported, left alone

 2. [bold]A merged change[/bold]: edit the code, commit and push; it is planned and applied.
      cd {work} && sed -i 's/api v1/api v2/' stacks/api/main.tf
      git commit -qam "api v2" && git push -q

 3. [bold]Broken HCL[/bold]: the run fails with Terraform's message and nothing is applied.
      cd {work} && sed -i 's/^locals {{/locals {{ broken =/' stacks/jobs/main.tf
      git commit -qam broken && git push -q
      git revert --no-edit HEAD && git push -q      # and back

 Also: tfops --config {config} status   (or: runs, show RUN_ID)
       logs: {escape(str(layout.log))}
 Ctrl-C stops the daemon cleanly (a running Terraform gets one SIGINT and time to save state).
"""
