"""The secrets tfops holds itself never leave the host, even when a stack reads them.

A stack on the tfops VM can read tfops' own token files (`file("/etc/tfops/slack-bot-token")`),
show them in a plan (a resource attribute, an output) or in an error. None of it may reach the
database, the run log, the CLI, Slack or tfops' own log.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest
from harness import Remote, demo_stack, tfops_cli, write_config
from slackfake import FakeSlack

from tfops.logs import JsonFormatter, RedactSecretsFilter, TextFormatter

pytestmark = pytest.mark.terraform

WEBHOOK_SECRET = "whsec-held-by-tfops-0123456789"
API_TOKEN = "api-token-held-by-tfops-9876543210"

READS_THE_TOKENS = """\
resource "demo_object" "leak" {{
  name    = "leak"
  content = file("{slack_token}")
}}

output "webhook_secret" {{
  value = file("{webhook_secret}")
}}
"""

FAILS_QUOTING_A_TOKEN = """\
output "number" {{
  value = tonumber(trimspace(file("{api_token}")))
}}
"""


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def test_a_stack_that_reads_tfops_own_secrets_leaks_none_of_them(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, slack
):
    files = {
        "slack_token": (tmp_path / "slack-bot-token", slack.bot_token),
        "webhook_secret": (tmp_path / "github-webhook-secret", WEBHOOK_SECRET),
        "api_token": (tmp_path / "api-token", API_TOKEN),
    }
    for path, value in files.values():
        path.write_text(value + "\n")
    paths = {name: str(path) for name, (path, _) in files.items()}
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "stacks that read tfops' secrets",
        {
            "stacks/reader/main.tf": demo_stack(demo_cloud, {}, extra=READS_THE_TOKENS.format(**paths)),
            "stacks/broken/main.tf": demo_stack(demo_cloud, {}, extra=FAILS_QUOTING_A_TOKEN.format(**paths)),
        },
    )
    config = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        stacks=[{"discover": "stacks/*", "on_merge": "plan", "on_drift": "notify", "drift_interval": 0}],
        slack={"bot_token_file": paths["slack_token"], "channel": "C0DEPLOYS", "base_url": slack.api_url},
        webhooks={"github": {"secret_file": paths["webhook_secret"]}},
        api={"tokens": [{"name": "ci", "token_file": paths["api_token"], "scope": "read"}]},
    )

    reconciled = tfops_cli(config, "--log-level", "debug", "reconcile", env=tf_env)
    assert reconciled.returncode == 1, reconciled.stderr  # `broken` fails, `reader` is planned
    runs = json.loads(tfops_cli(config, "runs", "--json", env=tf_env).stdout)
    by_stack = {run["stack"]: run for run in runs}
    assert by_stack["reader"]["status"] == "planned"
    assert by_stack["broken"]["status"] == "failed"
    shown = [tfops_cli(config, "show", str(run["id"]), "--json", env=tf_env).stdout for run in runs]
    assert any("demo_object.leak" in text for text in shown), "the plan itself is shown"

    stored = [path.read_bytes() for path in (tmp_path / "data").rglob("*.db*")]
    run_logs = [path.read_text() for path in (tmp_path / "data").rglob("*.log")]
    assert stored and run_logs
    for value in (slack.bot_token, WEBHOOK_SECRET, API_TOKEN):
        assert all(value.encode() not in blob for blob in stored), "in the database"
        assert all(value not in text for text in run_logs), "in a run log"
        assert value not in reconciled.stdout + reconciled.stderr, "in tfops' own output or log"
        assert all(value not in text for text in shown), "in tfops show --json"
        assert value not in slack.all_text(), "posted to Slack"


def test_a_log_record_carrying_a_held_secret_is_scrubbed_in_both_formats():
    secret = "xoxb-held-by-the-log-filter-1234"
    try:
        raise ValueError(f"Slack refused token {secret}")
    except ValueError:
        exc_info = sys.exc_info()
    for formatter in (TextFormatter(), JsonFormatter()):
        record = logging.LogRecord(
            "tfops.test", logging.ERROR, __file__, 1, "token %s in %r", (secret, [secret]), exc_info
        )
        assert RedactSecretsFilter([secret]).filter(record)
        line = formatter.format(record)
        assert secret not in line
        assert "ValueError: Slack refused token (redacted)" in line
        assert "token (redacted) in" in line
