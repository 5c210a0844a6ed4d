"""The status page end to end: `App.serve` with its uvicorn server on a loopback port, real git and
real Terraform (the demo provider) behind it, real HTTP requests in front, as a browser sends them.
The real-browser tests (Playwright driving Chromium) are separate; these need no browser."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from harness import Remote, demo_stack, edit_cloud_object, wait_for, write_config

from tfops.app import App
from tfops.config import load_settings
from tfops.models import RunKind, RunStatus, TriggerSource
from tfops.scheduler import queue_drift_check

pytestmark = pytest.mark.terraform

READ_TOKEN = "ui-read-token-0123456789abcdef"
CANARY = "ui-canary-s3cr3t-4711"  # a sensitive variable's value: no page may show it
HTML = {"Accept": "text/html"}
ONCALL = {"name": "oncall"}
SECRET_CODE = f"""
variable "password" {{
  type      = string
  sensitive = true
  default   = "{CANARY}"
}}
resource "demo_object" "vault" {{
  name   = "app-vault"
  secret = var.password
}}
"""


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def daemon(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, port) -> Iterator[Callable[..., App]]:
    """The daemon with the API's read token and the page; `app` is deployed once and in sync."""
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}, extra=SECRET_CODE)}
    )
    (tmp_path / "read").write_text(READ_TOKEN + "\n")
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(*, on_drift: str = "notify", tokens: bool = True) -> App:
        config = write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            stacks=[{"discover": "stacks/*", "on_merge": "apply", "on_drift": on_drift, "drift_interval": 0}],
            http={"listen": f"127.0.0.1:{port}"},
            **(
                {"api": {"tokens": [{"name": "oncall", "token_file": str(tmp_path / "read")}]}}
                if tokens
                else {}
            ),
        )
        app = App(load_settings(config, environ={}), environ=dict(tf_env))
        stop = threading.Event()
        thread = threading.Thread(target=app.serve, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))
        wait_for(lambda: app.web_server is not None and app.web_server.running, timeout=30, what="HTTP")
        wait_for(lambda: _last(app, RunKind.DEPLOY, RunStatus.APPLIED), timeout=120, what="the first deploy")
        app.queue.wait_idle(60)
        return app

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(60)


def _last(app: App, kind: RunKind, status: RunStatus | None = None):
    for run in app.store.list_runs(stack="app", limit=20):
        if run.kind is kind and (status is None or run.status is status):
            return run
    return None


@contextmanager
def _logged_in(port: int) -> Iterator[httpx.Client]:
    """A browser's session: logged in through the form, then carrying the cookie."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, headers=HTML) as client:
        response = client.post("/login", data={"token": READ_TOKEN, "next": "/"})
        assert response.status_code == 303 and "tfops_session" in response.headers["set-cookie"]
        yield client


def test_a_drift_shows_on_the_overview_and_its_run_page_shows_before_and_after(
    daemon, demo_cloud, tmp_path, port
) -> None:
    app = daemon()
    with _logged_in(port) as client:
        before = client.get("/")
        mark = client.get("/ui/changes").json()["mark"]
        edit_cloud_object(demo_cloud, "app-web", content="by hand")
        drift = queue_drift_check(app.store, app.queue, "app", source=TriggerSource.CLI, actor="test")
        assert drift is not None
        wait_for(lambda: app.store.get_run(drift.id).status.is_terminal, timeout=120, what="its end")
        overview = client.get("/")
        run_page = client.get(f"/runs/{drift.id}")
        stack_page = client.get("/stacks/app")
        log = client.get(f"/runs/{drift.id}/log")

        assert before.status_code == 200 and re.search(
            r'<tr data-stack="app" data-drift="in_sync"', before.text
        )
        assert re.search(r'<tr data-stack="app" data-drift="drifted"', overview.text)
        assert client.get("/ui/changes").json()["mark"] != mark  # what makes live.js fetch the page again
        assert '<span class="before">v1</span> → <span class="after">by hand</span>' in run_page.text
        assert f'<tr data-run="{drift.id}"' in stack_page.text
        assert log.status_code == 200 and log.text.strip()
        for page in (before, overview, run_page, stack_page, log):
            assert CANARY not in page.text
            assert str(tmp_path / "data") not in page.text


def test_an_api_token_opens_the_page_and_nothing_else_does(daemon, port) -> None:
    daemon()
    base = f"http://127.0.0.1:{port}"

    anonymous = httpx.get(f"{base}/", headers=HTML, timeout=20)
    script = httpx.get(f"{base}/runs/1", timeout=20)
    bad = httpx.post(f"{base}/login", data={"token": "guess"}, timeout=20)
    bearer = httpx.get(f"{base}/", headers={**HTML, "Authorization": f"Bearer {READ_TOKEN}"}, timeout=20)

    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2F"
    assert script.status_code == 401
    assert bad.status_code == 401 and 'name="token"' in bad.text
    assert bearer.status_code == 200 and 'data-stack="app"' in bearer.text
    assert "frame-ancestors 'none'" in bearer.headers["content-security-policy"]


def test_without_tokens_a_loopback_daemon_serves_the_page_openly(daemon, port, tmp_path) -> None:
    daemon(tokens=False)

    page = httpx.get(f"http://127.0.0.1:{port}/", headers=HTML, timeout=20)

    assert page.status_code == 200 and 'data-stack="app"' in page.text
    key = tmp_path / "data" / "ui-session.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600


def test_commits_behind_count_only_the_commits_that_touch_the_stacks_folder(tmp_path) -> None:
    from tfops.gitsource import GitSource
    from tfops.web.ui_commits import CommitLookup

    remote = Remote(tmp_path)
    applied = remote.commit_and_push(
        "app v1", {"stacks/app/main.tf": "# v1\n", "stacks/db/main.tf": "# v1\n"}
    )
    remote.commit_and_push("app v2 <b>bold</b>", {"stacks/app/main.tf": "# v2\n"})
    remote.commit_and_push("docs", {"README.md": "hello\n"})
    head = remote.commit_and_push("app v3", {"stacks/app/main.tf": "# v3\n"})
    source = GitSource(remote.url, "main", tmp_path / "data" / "repo")
    source.ensure_clone()
    lookup = CommitLookup(source)

    try:
        app, db = lookup.behind(applied, head, "stacks/app"), lookup.behind(applied, head, "stacks/db")
        commit = lookup.commit(head)
        gone = lookup.commit("f" * 40)
    finally:
        source.close()

    assert (app, db) == (2, 0)
    assert commit is not None and commit.subject == "app v3" and commit.sha == head
    assert gone is None
