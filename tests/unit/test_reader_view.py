"""The reader view gives each recorded stack the policy discovery gives it, and keeps no password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfops.config import Settings, load_settings, mask_url_password
from tfops.readview import VIEW_FORMAT, ReaderView, kept_form, mask_password, recorded_rules, view_of
from tfops.stacks import discover

CONFIG = """\
defaults:
  drift_interval: 30m
  on_drift: remediate
stacks:
  - path: stacks/network
    on_merge: ask
    drift_interval: 0
  - discover: "teams/*/prod"
    on_drift: ask
    depends_on: [network]
  - discover: "teams/**"
    drift_interval: 2h
    on_merge: plan
"""
FOLDERS = ("stacks/network", "teams/a/prod", "teams/b/dev", "teams/b/deep/er")


def settings(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "tfops.yaml"
    path.write_text(text)
    return load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path / "data"), **(environ or {})})


def test_each_recorded_stack_gets_the_policy_discovery_gives_it(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    for folder in FOLDERS:
        (checkout / folder).mkdir(parents=True)
        (checkout / folder / "main.tf").write_text("")
    loaded = settings(tmp_path, CONFIG)
    found = discover(checkout, loaded.stacks, loaded.defaults)
    assert len(found.stacks) == len(FOLDERS) and not found.refused

    rules = recorded_rules(view_of(loaded), [(stack.name, stack.path) for stack in found.stacks])

    for stack in found.stacks:
        rule = rules[stack.name]
        assert (rule.drift_interval, rule.depends_on) == (stack.drift_interval, stack.depends_on)
        assert (rule.on_merge, rule.on_drift) == (stack.on_merge.value, stack.on_drift.value)
    assert {rule.drift_interval for rule in rules.values()} == {0.0, 1800.0, 7200.0}


def test_a_stack_no_entry_gives_any_more_is_left_out(tmp_path: Path) -> None:
    rules = recorded_rules(view_of(settings(tmp_path, CONFIG)), [("gone", "elsewhere/gone")])

    assert rules == {}


def test_the_view_reads_back_as_it_was_written(tmp_path: Path) -> None:
    view = view_of(settings(tmp_path, CONFIG))
    kept = kept_form(view)
    assert kept is not None

    assert ReaderView.from_json(json.loads(json.dumps(kept.to_json()))) == view


@pytest.mark.parametrize(
    "url",
    ["postgresql://tfops:s3cret@db/tfops", "postgresql+psycopg://u:p%40ss@h:5432/d", "sqlite:////x/y.db"],
)
def test_the_view_masks_a_password_as_the_configuration_does(url: str) -> None:
    assert mask_password(url) == mask_url_password(url)


def test_a_store_password_is_kept_only_with_where_to_read_it(tmp_path: Path) -> None:
    url = "postgresql://tfops:s3cret-canary@db/tfops"
    from_file = view_of(settings(tmp_path, f"store:\n  url: {url}\n"))
    from_env = view_of(settings(tmp_path, "", {"TFOPS_STORE__URL": url}))
    from_json = view_of(settings(tmp_path, "", {"TFOPS_STORE": json.dumps({"url": url})}))

    assert from_file.store_url == url and from_file.store_url_from == "file"
    assert from_env.store_url_from == "env:TFOPS_STORE__URL"
    assert kept_form(from_json) is None, "a source the cache cannot name: not kept at all"
    for view in (from_file, from_env):
        kept = kept_form(view)
        assert kept is not None and "s3cret-canary" not in json.dumps(kept.to_json())


@pytest.mark.parametrize(
    "damage",
    [
        {"format": VIEW_FORMAT + 1},
        {"ha_failover": "soon"},
        {"stacks": [{"path": 1}]},
        {"store_url": None},
        {"store_url_from": "ssm:/x"},
    ],
)
def test_a_view_in_another_shape_is_refused(tmp_path: Path, damage: dict) -> None:
    kept = kept_form(view_of(settings(tmp_path, CONFIG)))
    assert kept is not None

    with pytest.raises((KeyError, TypeError, ValueError)):
        ReaderView.from_json(kept.to_json() | damage)
