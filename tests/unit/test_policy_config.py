"""`drift.ignore`, `guards` and `windows` in tfops.yaml: errors with file, field and reason;
resolution into Stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfops.config import load_settings
from tfops.config.summary import describe
from tfops.errors import ConfigError
from tfops.models import DriftIgnoreRule, StackGuards
from tfops.stacks import discover


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tfops.yaml"
    path.write_text("# tfops.yaml\n" + text + "\n")
    return path


@pytest.mark.parametrize(
    ("yaml_text", "field", "reason"),
    [
        (
            "defaults: {drift: {ignore: [{attributes: [desired_capacity]}]}}",
            "defaults.drift.ignore.0",
            "needs `address` or `type`",
        ),
        (
            "defaults: {drift: {ignore: [{type: aws_instance, attributes: []}]}}",
            "defaults.drift.ignore.0",
            "leave `attributes` out to ignore the whole resource",
        ),
        (
            "defaults: {drift: {ignore: [{type: 'aws instance'}]}}",
            "defaults.drift.ignore.0.type",
            "is not a resource type glob",
        ),
        (
            "stacks: [{path: a, drift: {ignore: [{address: 'aws_asg.*', attributes: ['tags..x']}]}}]",
            "stacks.0.drift.ignore.0.attributes.0",
            "is not an attribute path",
        ),
        (
            "stacks: [{path: a, drift: {ignore: [{address: x, attribute: [y]}]}}]",
            "stacks.0.drift.ignore.0",
            "attribute",
        ),
        (
            "defaults: {guards: {max_destroy: -1}}",
            "defaults.guards.max_destroy",
            "must be >= 0",
        ),
        ("stacks: [{path: a, guards: {protect: ['']}}]", "stacks.0.guards.protect.0", "must not be empty"),
        ("defaults: {guards: {max_deletes: 0}}", "defaults.guards", "max_deletes"),
        (
            "defaults: {windows: [{kind: deny, schedule: '0 17 * * 5', duration: 64h}]}",
            "defaults.windows.0.schedule",
            "write the day of the week by name",
        ),
        (
            "defaults: {windows: [{kind: deny, schedule: '0 17 * *', duration: 64h}]}",
            "defaults.windows.0.schedule",
            "five fields",
        ),
        (
            "defaults: {windows: [{kind: deny, schedule: '0 25 * * FRI', duration: 1h}]}",
            "defaults.windows.0.schedule",
            "is not a cron schedule",
        ),
        (
            "stacks: [{path: a, windows: [{kind: pause, schedule: '0 17 * * FRI', duration: 1h}]}]",
            "stacks.0.windows.0.kind",
            "must be one of allow, deny",
        ),
        (
            "defaults: {windows: [{kind: allow, schedule: '0 8 * * MON', duration: 0}]}",
            "defaults.windows.0.duration",
            "must be greater than 0",
        ),
        (
            "defaults: {windows: [{kind: allow, schedule: '0 8 * * MON', duration: 1h, actions: [plan]}]}",
            "defaults.windows.0.actions.0",
            "must be one of apply, remediate",
        ),
        ("defaults: {timezone: Europe/Berlln}", "defaults.timezone", "is not a time zone name"),
    ],
)
def test_each_invalid_rule_is_an_error_with_its_file_field_and_reason(tmp_path, yaml_text, field, reason):
    path = write(tmp_path, yaml_text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})
    message = str(caught.value)

    assert f"{path}: {field}" in message
    assert reason in message
    assert "(line 2)" in message


def test_a_stack_adds_its_ignore_rules_to_the_defaults_and_overrides_the_guard_keys_it_writes(tmp_path):
    (tmp_path / "repo" / "app").mkdir(parents=True)
    (tmp_path / "repo" / "app" / "main.tf").write_text("# terraform\n")
    (tmp_path / "repo" / "db").mkdir()
    (tmp_path / "repo" / "db" / "main.tf").write_text("# terraform\n")
    path = write(
        tmp_path,
        """defaults:
  drift: {ignore: [{type: aws_instance, attributes: ["tags.LastScanned"]}]}
  guards: {max_destroy: 0, protect: ["aws_db_instance.*"]}
stacks:
  - path: app
    drift: {ignore: [{address: "aws_autoscaling_group.*", attributes: [desired_capacity]}]}
    guards: {max_destroy: null, max_replace: 2}
  - path: db""",
    )
    settings = load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})

    found = {
        stack.name: stack for stack in discover(tmp_path / "repo", settings.stacks, settings.defaults).stacks
    }

    scanner = DriftIgnoreRule(type="aws_instance", attributes=("tags.LastScanned",))
    autoscaler = DriftIgnoreRule(address="aws_autoscaling_group.*", attributes=("desired_capacity",))
    assert found["app"].drift_ignore == (scanner, autoscaler)
    assert found["db"].drift_ignore == (scanner,)
    assert found["app"].guards == StackGuards(max_destroy=None, max_replace=2, protect=("aws_db_instance.*",))
    assert found["db"].guards == StackGuards(max_destroy=0, protect=("aws_db_instance.*",))


def test_check_config_shows_each_stacks_guards_and_how_many_drift_rules_it_has(tmp_path):
    path = write(
        tmp_path,
        """defaults:
  drift: {ignore: [{type: aws_instance, attributes: ["tags.LastScanned"]}]}
stacks:
  - path: app
    guards: {max_destroy: 0, protect: ["aws_db_instance.*"]}
  - path: db""",
    )

    lines = describe(load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})).splitlines()

    [app] = [line for line in lines if line.strip().startswith("app: app")]
    [db] = [line for line in lines if line.strip().startswith("db: db")]
    assert "guards: max_destroy 0 protect aws_db_instance.*, 1 drift ignore rule" in app
    assert "guards" not in db and "1 drift ignore rule" in db


def test_check_config_shows_each_stacks_sync_windows_in_their_time_zone(tmp_path):
    path = write(
        tmp_path,
        """defaults:
  windows: [{kind: deny, schedule: "0 17 * * FRI", duration: 64h, actions: [apply]}]
  timezone: Europe/Berlin
stacks:
  - path: app
  - path: db
    windows: []""",
    )

    lines = describe(load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})).splitlines()

    [app] = [line for line in lines if line.strip().startswith("app: app")]
    [db] = [line for line in lines if line.strip().startswith("db: db")]
    assert "windows (Europe/Berlin): deny 0 17 * * FRI for 2d16h [apply]" in app
    assert "windows" not in db, "windows: [] frees the stack of the defaults' windows"


def test_check_config_shows_which_stacks_a_stack_is_deployed_after(tmp_path):
    path = write(
        tmp_path,
        """stacks:
  - {name: network, path: network}
  - {name: app, path: app, depends_on: [network]}""",
    )

    lines = describe(load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})).splitlines()

    [app] = [line for line in lines if line.strip().startswith("app: app")]
    [network] = [line for line in lines if line.strip().startswith("network: network")]
    assert app.endswith("; after network)") and "after" not in network
