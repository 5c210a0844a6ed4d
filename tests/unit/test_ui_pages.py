"""The status page over real HTTP: uvicorn on a loopback port, a real SQLite store, httpx requests.

The store is filled through its own methods the way the daemon fills it (tests/unit/test_api.py's
`fill_store`, plus a stack and a commit subject holding `<script>`). The commit lookup reads a
hand-written source (the Protocol GitSource implements). Canaries: a sensitive value inside the
plans, and the data directory's name (a host path), which the API's scrub hides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from test_api import READ, SENSITIVE_CANARY, SHA_NEW, SHA_OLD, STACKS, WRITE, fill_store

from tfops.incidents import DriftedResource, DriftSeen
from tfops.models import (
    DecisionKind,
    DecisionOutcome,
    DecisionSource,
    DriftState,
    RunKind,
    RunStatus,
    Stack,
    Trigger,
    TriggerSource,
)
from tfops.store import Store
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.api import ApiToken
from tfops.web.ui import UiContext, ui_router
from tfops.web.ui_auth import COOKIE, UiAccess
from tfops.web.ui_commits import CommitLookup

DATA_CANARY = "datadir-canary-71c3"  # the data directory's name: a host path no page may show
PROGRAM_CANARY = "bin-canary-0e4d"  # the folder Terraform is installed in, quoted by the log
EVIL = "<script>alert(1)</script>"
EVIL_STACK = "x<script>alert(2)"  # a name cannot hold "/", so no closing tag
KEY = b"k" * 32
HTML = {"Accept": "text/html,application/xhtml+xml"}


@dataclass(frozen=True)
class FakeRevision:
    sha: str
    subject: str
    author: str


class Commits:
    """The commit source: two commits, one whose subject is an attempt at script injection."""

    def revision(self, rev: str) -> FakeRevision:
        subjects = {SHA_NEW: f"deploy {EVIL}", SHA_OLD: "first commit"}
        if rev not in subjects:
            raise ValueError(f"unknown commit {rev}")
        return FakeRevision(rev, subjects[rev], "Ada Lovelace")

    def commits_between(self, older: str, newer: str, path: str | None = None) -> int:
        return 3


@dataclass
class Page:
    store: Store
    client: httpx.Client
    runs: dict[str, int]
    data_dir: Path

    def get(self, path: str, token: ApiToken | None = READ, **headers: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {token.token}"} if token else {}
        return self.client.get(path, headers={**HTML, **auth, **headers})


def serve(router_context: UiContext) -> WebServer:
    server = WebServer(create_app([ui_router(router_context)]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    return server


def fill_more(store: Store, data_dir: Path) -> dict[str, int]:
    runs = {name: run.id for name, run in fill_store(store, data_dir / "runs").items()}
    with open(data_dir / "runs" / str(runs["awaiting"]) / "plan.log", "a") as log:
        log.write(f"$ /opt/{PROGRAM_CANARY}/terraform plan -out={data_dir}/plan.tfplan\n")
    store.sync_stacks([(EVIL_STACK, "stacks/evil")])
    store.set_head(EVIL_STACK, SHA_NEW)
    store.mark_stack_applied(EVIL_STACK, SHA_OLD)
    trigger = Trigger(source=TriggerSource.CLI, actor="bob", note=f"asked from {data_dir}/x")
    evil = store.create_run(EVIL_STACK, RunKind.PLAN, trigger, SHA_NEW)
    store.transition(evil.id, RunStatus.PLANNING, message=f"planning in {data_dir}/views")
    store.transition(evil.id, RunStatus.FAILED, message="failed", error=f"Error in {data_dir}/x: {EVIL}")
    runs["evil"] = evil.id
    approved = runs["awaiting"]
    store.record_decision(
        approved, DecisionKind.APPROVE, "bob", "Bob Approver", DecisionSource.CLI, SHA_NEW, "f" * 64,
        DecisionOutcome.COUNTED,
    )  # fmt: skip
    store.set_drift("network", DriftState.DRIFTED)
    store.track_drift(
        "network",
        DriftSeen(runs["drift"], datetime.now(UTC), SHA_NEW, SITE),
    )
    return runs


SITE = (DriftedResource("demo_object.site", ("content",)),)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    data_dir = tmp_path_factory.mktemp("ui") / DATA_CANARY
    data_dir.mkdir()
    store = Store(Store.sqlite_url(data_dir / "tfops.db"))
    store.upgrade()
    runs = fill_more(store, data_dir)
    stacks = {**STACKS, EVIL_STACK: Stack(name=EVIL_STACK, path="stacks/evil")}
    stacks["fresh"] = Stack(name="fresh", path="stacks/fresh")
    context = UiContext(
        store=store,
        stacks=lambda: stacks,
        access=UiAccess([READ, WRITE], KEY, loopback=True),
        commits=CommitLookup(Commits()),
        data_dir=data_dir,
        scrub=lambda text: text.replace(str(data_dir), "<data_dir>"),
    )
    server = serve(context)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield Page(store, client, runs, data_dir)
    assert server.stop(timeout=5.0)
    store.close()


def every_page(page: Page) -> list[str]:
    paths = ["/", "/?state=drifted", "/?state=failed", "/?q=net", "/stacks/network", "/stacks/dns"]
    paths += [f"/runs/{run_id}" for run_id in page.runs.values()]
    paths += [f"/runs/{run_id}/log" for run_id in page.runs.values()]
    return paths


# --------------------------------------------------------------------------- content


def test_the_overview_lists_every_stack_with_its_drift_commits_last_run_and_policy(page: Page) -> None:
    response = page.get("/")

    assert response.status_code == 200
    html = response.text
    for name in ("network", "dns", "legacy"):
        assert f'<tr data-stack="{name}"' in html
        assert f'<a href="/stacks/{name}">{name}</a>' in html
    network = row(html, "network")
    assert 'data-drift="drifted"' in network
    assert "3 commits behind" in network
    assert "first commit" in network and "Ada Lovelace" in network  # the applied commit
    assert "merge: ask · drift: remediate" in network
    assert f'<a href="/runs/{page.runs["drift"]}">drift</a>' in network
    assert "not configured" in row(html, "legacy")
    assert re.search(r'data-count="drifted">1<', html)
    assert re.search(r'data-count="failed">2<', html)  # dns and the evil stack
    assert re.search(r'data-count="awaiting_approval">1<', html)
    assert "<svg" in html and "drifted and failed stacks per day" in html


def test_the_filters_and_the_search_narrow_the_table_but_not_the_counts(page: Page) -> None:
    drifted = page.get("/?state=drifted").text
    failed = page.get("/?state=failed").text
    searched = page.get("/?q=DN").text

    assert stack_names(drifted) == ["network"]
    assert stack_names(failed) == ["dns", EVIL_STACK.replace("<", "&lt;").replace(">", "&gt;")]
    assert stack_names(searched) == ["dns"]
    assert re.search(r'data-count="total">5<', searched)


def test_the_stack_page_shows_its_runs_drift_history_and_applied_commits(page: Page) -> None:
    html = page.get("/stacks/network").text

    for role in ("awaiting", "drift"):
        run_id = page.runs[role]
        assert f'<tr data-run="{run_id}"' in html and f'href="/runs/{run_id}"' in html
    assert 'data-section="drift-history"' in html
    assert "demo_object.site" in html and "content" in html
    missing = page.get("/stacks/nothing-here")
    assert missing.status_code == 404 and "no stack named &#39;nothing-here&#39;" in missing.text
    assert page.get("/runs/424242", Accept="application/json").json() == {"detail": "no run 424242"}
    assert "No runs yet." in page.get("/stacks/fresh").text  # configured, not recorded yet


def test_the_run_page_shows_timeline_plan_drift_before_after_approver_and_log(page: Page) -> None:
    drift = page.get(f"/runs/{page.runs['drift']}").text
    awaiting = page.get(f"/runs/{page.runs['awaiting']}").text

    for section in ("timeline", "plan", "drift", "decisions", "log"):
        assert f'<section data-section="{section}">' in drift
    assert '<span class="before">hello</span> → <span class="after">edited by hand</span>' in drift
    assert "changed by arn:aws:iam::111111111111:user/alice (PutObject, console" in section_of(drift, "drift")
    assert "plan saved; waiting for 2 approvals" in drift
    decisions = section_of(awaiting, "decisions")
    assert "Bob Approver" in decisions and "via cli" in decisions and "alice" in decisions
    assert f'href="/runs/{page.runs["awaiting"]}/log"' in awaiting
    assert "terraform output mentioning" in section_of(awaiting, "log")


def test_the_log_route_answers_the_whole_log_as_plain_text(page: Page) -> None:
    response = page.get(f"/runs/{page.runs['awaiting']}/log")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("terraform output mentioning")
    assert "$ terraform plan -out=<data_dir>/plan.tfplan" in response.text
    assert page.get("/runs/999999/log").status_code == 404


# --------------------------------------------------------------------------- nothing unsafe


def test_a_stack_name_and_a_commit_subject_with_script_are_escaped(page: Page) -> None:
    for path in ("/", f"/runs/{page.runs['evil']}", f"/stacks/{EVIL_STACK}"):
        html = page.get(path).text
        assert "<script>alert" not in html, path
        assert "x&lt;script&gt;alert(2)" in html, path  # the stack's name
    assert "deploy &lt;script&gt;alert(1)&lt;/script&gt;" in page.get("/").text  # the head's subject
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.get(f"/runs/{page.runs['evil']}").text  # error


def test_no_page_shows_a_sensitive_value_or_the_data_directory(page: Page) -> None:
    for path in every_page(page):
        response = page.get(path)
        assert response.status_code == 200, path
        assert SENSITIVE_CANARY not in response.text, path
        assert DATA_CANARY not in response.text, path
        assert PROGRAM_CANARY not in response.text, path
    assert "&lt;data_dir&gt;" in page.get(f"/runs/{page.runs['evil']}").text  # scrubbed, then escaped


def test_every_page_sends_the_security_headers(page: Page) -> None:
    for path in [*every_page(page), "/login", "/ui/static/ui.css", "/ui/changes"]:
        headers = page.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-content-type-options"] == "nosniff", path


def test_pages_have_no_inline_script_or_style_and_no_form_but_logout(page: Page) -> None:
    for path in every_page(page):
        html = page.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path
        assert " on" + "click=" not in html, path
        actions = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]*)"', html)
        assert set(actions) <= {"/logout"}, path


def test_the_live_script_and_the_change_mark_move_when_a_run_does(page: Page) -> None:
    script = page.get("/ui/static/live.js")
    before = page.get("/ui/changes").json()["mark"]
    run = page.store.create_run("dns", RunKind.PLAN, Trigger(source=TriggerSource.CLI), SHA_NEW)
    page.store.transition(run.id, RunStatus.PLANNING, message="planning")

    assert script.status_code == 200 and "data-live" in script.text
    assert page.get("/ui/changes").json()["mark"] != before
    assert 'data-live="stacks"' in page.get("/").text


# --------------------------------------------------------------------------- helpers


def row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-stack="{re.escape(name)}".*?</tr>', html, re.S)
    assert match, name
    return match.group(0)


def stack_names(html: str) -> list[str]:
    return re.findall(r'<tr data-stack="([^"]*)"', html)


def section_of(html: str, name: str) -> str:
    match = re.search(rf'<section data-section="{name}">.*?</section>', html, re.S)
    assert match, name
    return match.group(0)


def test_cookie_name_is_the_contracts() -> None:
    assert COOKIE == "tfops_session"
