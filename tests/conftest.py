"""Fixtures for running a real Terraform offline against the demo provider.

- ``terraform_bin``: the Terraform under test. Always the pip-installed 1.0.3 (id ``tf1.0.3``);
  also the binary named by ``TFOPS_TEST_TERRAFORM`` when set (id ``tf-extra``).
- ``tf_mirror`` / ``tf_cli_config``: a provider mirror and a CLI config that installs only from it;
  it serves the demo provider and the AWS-backed test provider ``tfops-test/awsssm`` (tests/awsstack.py).
- ``tf_env``: a fresh, minimal environment for Terraform processes (never the machine's own
  ``TF_CLI_CONFIG_FILE``); add ``TFOPS_DEMO_CLOUD`` or pass ``root`` in the stack's provider block.
- ``demo_cloud``: an empty folder per test, to be the demo provider's "cloud".
- ``browser`` / ``page``: headless Chromium under Playwright (tests/browser.py), one per test module,
  a fresh context per test.

Nothing here changes ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

import awsstack
import browser as browser_module
import cloudtrailfake
import motoserver
import pytest
from slackfake import FakeSlack

from tfops import proc
from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config

# Run in the background from a script (`pytest … &`), the suite starts with SIGINT ignored, and
# every child it starts would inherit that: the tests that stop a process gently would see it
# ignore SIGINT. The CLI does the same in `main`.
proc.restore_sigint()

EXTRA_TERRAFORM_ENV = "TFOPS_TEST_TERRAFORM"
_PIP_TERRAFORM = "tf1.0.3"
_EXTRA_TERRAFORM = "tf-extra"


def _terraform_targets() -> list[str]:
    return [_PIP_TERRAFORM] + ([_EXTRA_TERRAFORM] if os.environ.get(EXTRA_TERRAFORM_ENV) else [])


def pytest_configure(config: pytest.Config) -> None:
    # Fail at start-up, not in the middle of a run, when the extra Terraform is misnamed.
    extra = os.environ.get(EXTRA_TERRAFORM_ENV)
    if extra and not (Path(extra).is_file() and os.access(extra, os.X_OK)):
        raise pytest.UsageError(f"{EXTRA_TERRAFORM_ENV}={extra} is not an executable file")


def pytest_report_header(config: pytest.Config) -> str:
    extra = os.environ.get(EXTRA_TERRAFORM_ENV)
    return "terraform targets: pip 1.0.3" + (f", {extra} ({EXTRA_TERRAFORM_ENV})" if extra else "")


@pytest.fixture(scope="session", params=_terraform_targets())
def terraform_bin(request: pytest.FixtureRequest) -> Path:
    if request.param == _EXTRA_TERRAFORM:
        return Path(os.environ[EXTRA_TERRAFORM_ENV])
    return terraform_binary()


@pytest.fixture(scope="session")
def tf_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return awsstack.add_to_mirror(build_mirror(tmp_path_factory.mktemp("tf-mirror")))


@pytest.fixture(scope="session")
def tf_cli_config(tmp_path_factory: pytest.TempPathFactory, tf_mirror: Path) -> Path:
    config_dir = tmp_path_factory.mktemp("tf-cli")
    plugin_cache = config_dir / "plugin-cache"
    # The cache has the mirror's layout; filling it up front means parallel `terraform init`s
    # only read it (Terraform's cache is not safe against concurrent first installs).
    awsstack.add_to_mirror(build_mirror(plugin_cache))
    return write_cli_config(config_dir / "terraform.tfrc", tf_mirror, plugin_cache_dir=plugin_cache)


@pytest.fixture(scope="session")
def _tf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared so the demo provider's cached TLS certificate is made once per session.
    return tmp_path_factory.mktemp("tf-home")


@pytest.fixture(scope="session")
def tf_session_env(tf_cli_config: Path, _tf_home: Path) -> dict[str, str]:
    """``tf_env`` for fixtures that outlive one test (a daemon shared by a module): copy it to extend."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(_tf_home),
        "TF_CLI_CONFIG_FILE": str(tf_cli_config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }


@pytest.fixture
def tf_env(tf_session_env: dict[str, str]) -> dict[str, str]:
    """A new dict per test: safe to extend, e.g. ``{**tf_env, "TFOPS_DEMO_CLOUD": str(demo_cloud)}``."""
    return dict(tf_session_env)


@pytest.fixture
def demo_cloud(tmp_path: Path) -> Path:
    cloud = tmp_path / "demo-cloud"
    cloud.mkdir()
    return cloud


@pytest.fixture(scope="session")
def _moto_server():
    server, endpoint = motoserver.start()
    yield endpoint
    server.stop()


@pytest.fixture
def aws(_moto_server):
    """An empty AWS account on loopback (moto): `aws.url` is the endpoint for boto3 and Terraform."""
    _moto_server.reset()
    return _moto_server


@pytest.fixture
def aws_record(tmp_path: Path) -> Path:
    """Where the awsssm test provider records its operations (see tests/awsstack.py)."""
    return tmp_path / "awsssm-record.jsonl"


@pytest.fixture
def trail():
    """A CloudTrail `LookupEvents` endpoint on loopback that serves the events a test records."""
    server, fake = cloudtrailfake.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/browser.py) for a test module; a test opens its own `page`.

    Per module, not per session: while Playwright's sync API runs, its event loop is the main
    thread's running loop, and any later test calling `asyncio.run` would fail.
    """
    browser_module.require_browser()
    with browser_module.chromium() as running:
        yield running


@pytest.fixture
def page(browser):
    """A page in a fresh browser context: no cookies or storage from another test."""
    context = browser.new_context(viewport=browser_module.VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def slack():
    """Slack's Web API on loopback, for the real slack-sdk (tests/slackfake)."""
    fake = FakeSlack().start()
    yield fake
    fake.stop()
