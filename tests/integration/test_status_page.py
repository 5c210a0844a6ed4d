"""The status page in a real browser: headless Chromium (Debian's, driven by Playwright) against a
real `tfops serve` with real runs: real git, real Terraform, the demo provider.

One daemon serves the whole module (starting it deploys three stacks, which takes most of the
time); each test opens its own browser context and asserts its own outcome. The stacks:

- `app`: one demo object, applied on merge, drift reported (the drift scenario);
- `db`: a sensitive variable whose value is the canary that must appear on no page;
- `gate`: asks before applying, so its first deploy waits for `tfops approve`.
"""

from __future__ import annotations

import pytest
import yaml
from harness import Remote, demo_stack, wait_for, write_config
from served import ServedDaemon, add_http_and_tokens, free_port

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


# --- the infrastructure: a daemon and a browser that can talk to it ---------------------------------


def test_the_browser_reaches_the_served_daemon_on_loopback(estate, page):
    daemon, _ = estate

    answer = page.goto(f"{daemon.base}/healthz")

    assert answer is not None and answer.status == 200
    assert '"ok"' in page.content() or "ok" in page.inner_text("body")
    assert {s["name"] for s in daemon.api("/api/stacks")} == set(STACKS)
