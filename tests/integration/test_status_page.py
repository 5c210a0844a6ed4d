"""The status page in a real browser: headless Chromium (Debian's, driven by Playwright) against a
real `tfops serve` with real runs: real git, real Terraform, the demo provider.

One daemon serves the whole module (starting it deploys three stacks, which takes most of the
time); each test opens its own browser context and asserts its own outcome. The stacks:

- `app`: one demo object, applied on merge, drift reported (the drift scenario);
- `db`: a sensitive variable whose value is the canary that must appear on no page;
- `gate`: asks before applying, so its first deploy waits for `tfops approve`.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from browser import RequestLog, log_in
from harness import Remote, demo_stack, edit_cloud_object, tfops_cli, wait_for, write_config
from playwright.sync_api import Page, expect
from served import READ_TOKEN, ServedDaemon, add_http_and_tokens, bearer, free_port

pytestmark = pytest.mark.terraform

CANARY = "canary-ui-s3cr3t-6b1e"  # the sensitive variable's value, in Git
CONSOLE = "canary-ui-c0nsole-94d2"  # set outside Terraform: drift of a sensitive attribute
SECRET_CODE = f"""\
variable "db_password" {{
  type      = string
  sensitive = true
  default   = "{CANARY}"
}}

resource "demo_object" "db" {{
  name    = "db-credentials"
  content = "credentials"
  secret  = var.db_password
}}
"""
STACKS = ("app", "db", "gate")


@pytest.fixture(scope="module")
def estate(tmp_path_factory, terraform_bin, tf_cli_config, tf_session_env):
    """The served daemon after its first poll: app and db applied, gate awaiting approval."""
    root = tmp_path_factory.mktemp("status-page")
    cloud = root / "cloud"
    cloud.mkdir()
    remote = Remote(root)
    remote.commit_and_push(
        "three stacks",
        {
            "stacks/app/main.tf": demo_stack(cloud, {"app-web": "v1"}),
            "stacks/db/main.tf": demo_stack(cloud, {}, extra=SECRET_CODE),
            "stacks/gate/main.tf": demo_stack(cloud, {"gate-door": "v1"}),
        },
    )
    config = write_config(
        root / "tfops.yaml",
        remote=remote,
        data_dir=root / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        stacks=[
            {"name": "gate", "path": "stacks/gate", "on_merge": "ask"},
            {"discover": "stacks/*", "on_merge": "apply", "on_drift": "notify", "drift_interval": 0},
        ],
    )
    data = yaml.safe_load(config.read_text())
    data["repo"]["poll_interval"] = "1h"  # the first poll at start deploys; nothing is pushed later
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    port = free_port()
    add_http_and_tokens(config, port)
    daemon = ServedDaemon(config, dict(tf_session_env), port, root / "daemon.log")
    daemon.start()
    try:
        wait_for(lambda: _first_deploys_ended(daemon), timeout=180, what="the first deploys")
        yield daemon, cloud
    finally:
        daemon.stop()


def _first_deploys_ended(daemon: ServedDaemon) -> bool:
    latest = {}
    for run in reversed(daemon.runs()):
        latest[run["stack"]] = run["status"]
    return latest == {"app": "applied", "db": "applied", "gate": "awaiting_approval"}


# --- the overview, live, and a click through to the drifted attribute --------------------------------


def test_a_drift_shows_on_the_overview_without_a_reload_and_its_run_shows_before_and_after(page, estate):
    daemon, cloud = estate
    log_in(page, daemon.base, READ_TOKEN)
    for name in STACKS:
        expect(page.locator(f'tr[data-stack="{name}"]')).to_be_visible()
    row = page.locator('tr[data-stack="app"]')
    expect(row).to_have_attribute("data-drift", "in_sync")
    drifted_before = _count(page, "drifted")
    page.evaluate("() => { window.tfopsSamePage = true }")  # gone if the page reloads

    edit_cloud_object(cloud, "app-web", content="edited by hand")
    run = daemon.wait_for_run(daemon.queue_drift_check("app"))

    assert run["status"] == "planned", run  # a drift run with changes, on_drift: notify
    expect(row).to_have_attribute("data-drift", "drifted")
    expect(row.locator('td[data-col="drift"]')).to_contain_text("drifted")
    drifted_now = re.compile(rf"\b{drifted_before + 1}\b")
    expect(page.locator('[data-count="drifted"]').first).to_have_text(drifted_now)
    assert page.evaluate("() => window.tfopsSamePage") is True, "the page was reloaded"

    row.locator('a[href="/stacks/app"]').first.click()
    expect(page).to_have_url(f"{daemon.base}/stacks/app")
    page.locator(f'tr[data-run="{run["id"]}"] a[href="/runs/{run["id"]}"]').first.click()
    expect(page).to_have_url(f"{daemon.base}/runs/{run['id']}")
    drift = page.locator('section[data-section="drift"]')
    expect(drift).to_contain_text("content")
    expect(drift).to_contain_text(re.compile(r"v1\W*→\W*edited by hand"))


def test_the_overview_filters_by_state_and_by_search(page, estate):
    daemon, _ = estate
    stacks = daemon.api("/api/stacks")
    drifted = {stack["name"] for stack in stacks if stack["drift"] == "drifted"}
    waiting = {s["name"] for s in stacks if (s["last_run"] or {}).get("status") == "awaiting_approval"}
    log_in(page, daemon.base, READ_TOKEN)

    for state, expected in (("drifted", drifted), ("awaiting_approval", waiting)):
        page.goto(f"{daemon.base}/?state={state}")
        expect(page.locator("tr[data-stack]")).to_have_count(len(expected))
        shown = page.locator("tr[data-stack]").evaluate_all("rows => rows.map(r => r.dataset.stack)")
        assert set(shown) == expected, state
    page.goto(f"{daemon.base}/?q=db")
    expect(page.locator("tr[data-stack]")).to_have_count(1)
    expect(page.locator('tr[data-stack="db"]')).to_be_visible()


def test_the_pages_work_with_javascript_off(browser, estate):
    daemon, _ = estate
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        [run, *_] = daemon.runs("db")
        log_in(page, daemon.base, READ_TOKEN, next_path=f"/runs/{run['id']}")

        expect(page.locator('section[data-section="timeline"]')).to_contain_text(run["status"])
        page.goto(f"{daemon.base}/")
        expect(page.locator("tr[data-stack]")).to_have_count(len(STACKS))
    finally:
        context.close()


def _count(page: Page, state: str) -> int:
    text = page.locator(f'[data-count="{state}"]').first.inner_text()
    found = re.search(r"\d+", text)
    assert found, f"no number in the {state} count: {text!r}"
    return int(found.group())


# --- approvals -----------------------------------------------------------------------------------------


def test_an_ask_run_approved_with_tfops_approve_shows_the_approver_on_its_run_page(page, estate):
    daemon, _ = estate
    [waiting] = [run for run in daemon.runs("gate") if run["status"] == "awaiting_approval"]

    approved = tfops_cli(daemon.config, "approve", str(waiting["id"]), env=daemon.process_env)

    assert approved.returncode == 0, approved.stdout + approved.stderr
    approver = pwd.getpwuid(os.getuid()).pw_name  # the CLI records the account that ran it
    log_in(page, daemon.base, READ_TOKEN, next_path=f"/runs/{waiting['id']}")
    expect(page).to_have_url(f"{daemon.base}/runs/{waiting['id']}")
    expect(page.locator('section[data-section="decisions"]')).to_contain_text(approver)
    expect(page.locator('section[data-section="timeline"]')).to_contain_text("applied")


# --- nothing secret ------------------------------------------------------------------------------------


def test_a_sensitive_value_and_the_hosts_folders_appear_in_no_page(page, estate):
    daemon, cloud = estate
    edit_cloud_object(cloud, "db-credentials", secret=CONSOLE)
    drift = daemon.wait_for_run(daemon.queue_drift_check("db"))
    assert drift["status"] == "planned", drift

    paths = ["/", "/?state=drifted", *(f"/stacks/{name}" for name in STACKS)]
    for run in daemon.runs():
        paths += [f"/runs/{run['id']}", f"/runs/{run['id']}/log"]
    pages = {path: _get(daemon, path) for path in paths}
    log_in(page, daemon.base, READ_TOKEN, next_path=f"/runs/{drift['id']}")
    expect(page.locator('section[data-section="drift"]')).to_contain_text("secret")
    pages["browser: drift run"] = page.content()
    page.goto(f"{daemon.base}/")
    expect(page.locator('tr[data-stack="db"]')).to_have_attribute("data-drift", "drifted")
    pages["browser: overview"] = page.content()

    assert "secret" in pages[f"/runs/{drift['id']}"], "the drifted sensitive attribute is named"
    assert pages[f"/runs/{drift['id']}/log"].strip(), "the log is shown"
    log = httpx.get(f"{daemon.base}/runs/{drift['id']}/log", headers=bearer(READ_TOKEN), timeout=30)
    assert log.headers["content-type"].startswith("text/plain")
    for secret in (CANARY, CONSOLE):
        leaks = [path for path, text in pages.items() if secret in text]
        assert not leaks, f"{secret} shown on {leaks}"
    # Host paths are scrubbed as in the API: the data dir, the cloud, the remote, the Terraform binary.
    for folder in (str(daemon.config.parent), sys.prefix):
        named = [path for path, text in pages.items() if folder in text]
        assert not named, f"{folder} shown on {named}"


def _get(daemon: ServedDaemon, path: str) -> str:
    answer = httpx.get(f"{daemon.base}{path}", headers=bearer(READ_TOKEN), timeout=30)
    assert answer.status_code == 200, (path, answer.status_code)
    return answer.text


# --- access --------------------------------------------------------------------------------------------


def test_without_a_token_the_login_page_a_bad_token_refused_and_an_api_token_works(page, estate):
    daemon, _ = estate
    anonymous = httpx.get(
        f"{daemon.base}/stacks/app", headers={"Accept": "text/html"}, follow_redirects=False, timeout=10
    )
    assert anonymous.status_code == 303
    assert urlsplit(anonymous.headers["location"]).path == "/login"
    assert "next=" in anonymous.headers["location"]
    assert httpx.get(f"{daemon.base}/", headers=bearer("not-the-token"), timeout=10).status_code == 401
    with_bearer = httpx.get(f"{daemon.base}/", headers=bearer(READ_TOKEN), timeout=10)
    assert with_bearer.status_code == 200 and 'data-stack="app"' in with_bearer.text

    page.goto(f"{daemon.base}/stacks/app")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=token]", "not-the-token")
    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.press("input[name=token]", "Enter")
    assert refused.value.status == 401
    expect(page.locator("input[name=token]")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "tfops_session"]

    page.fill("input[name=token]", READ_TOKEN)
    with page.expect_navigation():
        page.press("input[name=token]", "Enter")

    expect(page).to_have_url(f"{daemon.base}/stacks/app")
    expect(page.locator("tr[data-run]").first).to_be_visible()
    [session] = [c for c in page.context.cookies() if c["name"] == "tfops_session"]
    assert session["httpOnly"] is True
    assert READ_TOKEN not in session["value"], "the cookie is signed, not the token itself"


# --- headers, and nothing from outside -----------------------------------------------------------------


def test_pages_send_a_csp_load_nothing_but_their_own_origin_and_report_no_error(page, estate):
    daemon, _ = estate
    requests = RequestLog(page)
    log_in(page, daemon.base, READ_TOKEN)
    [run, *_] = daemon.runs("app")

    answers = [page.goto(f"{daemon.base}{path}") for path in ("/", "/stacks/app", f"/runs/{run['id']}")]
    # live.js runs under the CSP: it asks the server for changes (a /ui/ request that is no file)
    page.wait_for_event("request", lambda r: re.match(r"/ui/(?!static/)", urlsplit(r.url).path) is not None)

    for answer in answers:
        assert answer is not None and answer.status == 200
        headers = answer.all_headers()
        csp = _directives(headers.get("content-security-policy", ""))
        assert "frame-ancestors" in csp and csp["frame-ancestors"] == ["'none'"], headers
        scripts = csp.get("script-src", csp.get("default-src"))
        assert scripts and "'unsafe-inline'" not in scripts, csp
        assert headers.get("referrer-policy") == "no-referrer"
    assert any(urlsplit(url).path == "/ui/static/live.js" for url in requests.urls), requests.urls
    assert requests.origins() == {daemon.base}, requests.urls
    assert requests.errors == [], "no CSP violation, failed load or script error"


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (part.split() for part in csp.split(";") if part.strip())
    return {words[0].lower(): words[1:] for words in parts}


# --- pictures a person can look at ---------------------------------------------------------------------


def test_screenshots_of_the_overview_and_a_run_page_are_saved(page, estate, tmp_path):
    daemon, _ = estate
    [run, *_] = daemon.runs("app")
    log_in(page, daemon.base, READ_TOKEN)
    expect(page.locator('tr[data-stack="app"]')).to_be_visible()
    page.screenshot(path=tmp_path / "overview.png", full_page=True)
    page.goto(f"{daemon.base}/runs/{run['id']}")
    expect(page.locator('section[data-section="timeline"]')).to_be_visible()
    page.screenshot(path=tmp_path / "run.png", full_page=True)

    for name in ("overview.png", "run.png"):
        picture = (tmp_path / name).read_bytes()
        assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 10_000, name
    print(f"screenshots: {tmp_path / 'overview.png'} {tmp_path / 'run.png'}")
