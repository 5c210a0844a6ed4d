"""A 1,000-resource plan in Slack: a message inside Slack's limits, and the whole plan as a file.

Real git, real Terraform, the fake Slack Web API (which rejects what Slack rejects, so an
oversized message would fail the post, not just an assertion here).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import Remote, demo_stack, make_app, wait_for, write_config
from slackfake import MAX_BLOCKS, MAX_BLOCKS_TEXT, MAX_SECTION_TEXT, blocks_text_length

from tfops.demo.mirror import NULL_PROVIDER_SOURCE, NULL_PROVIDER_VERSION, null_provider_binary
from tfops.models import RunKind, RunStatus

pytestmark = pytest.mark.terraform

CHANNEL = "C0DEPLOYS"
RESOURCES = 1000

# null_resource plans in milliseconds per instance; the demo provider's Python round trips are
# slower, so it is only the fallback for a machine without hashicorp/null in the mirror.
NULL_FLEET = f"""\
terraform {{
  required_providers {{
    null = {{
      source  = "{NULL_PROVIDER_SOURCE}"
      version = "{NULL_PROVIDER_VERSION}"
    }}
  }}
}}

resource "null_resource" "fleet" {{
  count = {RESOURCES}
}}
"""

DEMO_FLEET = f"""\
resource "demo_object" "fleet" {{
  count   = {RESOURCES}
  name    = "fleet-${{count.index}}"
  content = "item ${{count.index}}"
}}
"""


def fleet(cloud: Path) -> tuple[str, str]:
    """(Terraform code, resource address prefix) for a stack of RESOURCES resources."""
    if null_provider_binary() is not None:
        return NULL_FLEET, "null_resource.fleet"
    return demo_stack(cloud, {}, extra=DEMO_FLEET), "demo_object.fleet"


@pytest.fixture
def app(tmp_path, terraform_bin, tf_cli_config, tf_env, demo_cloud, slack):
    code, _ = fleet(demo_cloud)
    remote = Remote(tmp_path)
    remote.commit_and_push("a fleet of 1,000", {"stacks/fleet/main.tf": code})
    token_file = tmp_path / "slack-token"
    token_file.write_text(slack.bot_token + "\n")
    config = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        # `plan`: the merge is planned and posted, never applied, so the test pays for one plan only.
        stacks=[{"discover": "stacks/*", "on_merge": "plan", "on_drift": "notify", "drift_interval": 0}],
        slack={"bot_token_file": str(token_file), "channel": CHANNEL, "base_url": slack.api_url},
    )
    built = make_app(config, tf_env)
    built.outbox_sender.idle_wait = 0.1  # the test waits on delivery; a daemon can idle longer
    yield built
    built.close()


def block_texts(node):
    """Every text string in the blocks, in order."""
    if isinstance(node, list):
        return [text for item in node for text in block_texts(item)]
    if isinstance(node, dict):
        return [
            text
            for key, value in node.items()
            for text in ([value] if key == "text" and isinstance(value, str) else block_texts(value))
        ]
    return []


def section_texts(blocks):
    return [block["text"]["text"] for block in blocks if block["type"] == "section" and "text" in block]


def test_a_thousand_resource_plan_is_a_message_within_limits_and_the_whole_plan_in_the_thread(
    app, slack, demo_cloud
):
    _, prefix = fleet(demo_cloud)

    result = app.reconcile_once(timeout=120)
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")

    [run] = result.runs
    assert (run.kind, run.status) == (RunKind.DEPLOY, RunStatus.PLANNED), run.error
    recorded = app.store.get_slack_message(run.id)
    posts = slack.calls("chat.postMessage")
    assert posts and all(call.ok for call in posts), [call.error for call in posts]
    assert all(call.ok for call in slack.calls("chat.update")), "an update was refused as too big"

    message = slack.message(CHANNEL, recorded.ts)
    assert message.thread_ts is None, "the run's message is top level"
    assert len(message.blocks) <= MAX_BLOCKS
    assert blocks_text_length(message.blocks) <= MAX_BLOCKS_TEXT
    assert all(len(text) <= MAX_SECTION_TEXT for text in section_texts(message.blocks))
    assert message.text and "planned" in message.text.lower(), "the fallback text is set"
    assert str(RESOURCES) in message.text, "the fallback text carries the counts"
    shown = "\n".join(block_texts(message.blocks))
    assert re.search(r"and \d+ more", shown) and "Shortened to fit Slack" in shown, "the cut is said"
    assert f"{prefix}[{RESOURCES - 1}]" not in shown, "the last resource is left to the file"

    [plan_file] = slack.files(CHANNEL)
    assert plan_file.thread_ts == recorded.ts, "the file is in the run's thread"
    listed = set(re.findall(re.escape(prefix) + r"\[(\d+)\]", plan_file.text))
    assert listed == {str(index) for index in range(RESOURCES)}, "the file names every resource"
