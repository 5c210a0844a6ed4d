"""Which directories are stacks, and which stacks a change touches."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from tfops.changes import PathPrefixDetector, affected_stacks
from tfops.config import Settings, StackDefaults, StackEntry
from tfops.errors import ConfigError, StackPathError
from tfops.models import OnDrift, OnMerge, Stack, StackAws
from tfops.stacks import (
    Refusal,
    RefusedStack,
    discover,
    stack_env,
)

DEFAULTS = StackDefaults()


def discover_stacks(repo_root, entries, defaults) -> list[Stack]:
    """`discover`, all or nothing: any refusal is a StackPathError naming each refused stack."""
    found = discover(repo_root, entries, defaults)
    if found.refused:
        raise StackPathError("; ".join(map(str, found.refused)), hint=found.refused[0].hint)
    return list(found.stacks)


def make_tree(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# terraform\n" if name.endswith((".tf", ".tf.json")) else "notes\n")
    return root


def names_and_paths(stacks: list[Stack]) -> list[tuple[str, str]]:
    return [(stack.name, stack.path) for stack in stacks]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "repo",
        [
            "stacks/app/main.tf",
            "stacks/app/.terraform/modules/vpc/main.tf",  # a module copy, not a stack
            "stacks/db/main.tf.json",
            "stacks/docs/README.md",  # no Terraform: not a stack
            "stacks/.hidden/main.tf",
            "stacks/app/nested/main.tf",  # deeper than stacks/*
            "envs/prod/network/main.tf",
            "envs/staging/network/main.tf",
            "envs/prod/dns/main.tf",
            "modules/vpc/main.tf",
            "core/network/main.tf",
            "core/network/prod.tfvars",
            "shared/common.tfvars",
            ".github/workflows/ci.tf",
        ],
    )


# --------------------------------------------------------------------------- discovery


def test_a_glob_finds_directories_that_directly_hold_terraform_files(repo):
    stacks = discover_stacks(repo, [StackEntry(discover="stacks/*")], DEFAULTS)
    assert names_and_paths(stacks) == [("app", "stacks/app"), ("db", "stacks/db")]


def test_double_star_spans_levels_but_skips_hidden_and_dot_terraform_dirs(repo):
    stacks = discover_stacks(repo, [StackEntry(discover="stacks/**")], DEFAULTS)
    assert [stack.path for stack in stacks] == ["stacks/app", "stacks/db", "stacks/app/nested"]


def test_discovered_stacks_take_policy_from_the_entry_then_the_defaults(repo):
    defaults = StackDefaults(on_merge=OnMerge.PLAN, on_drift=OnDrift.IGNORE, drift_interval=600)
    entry = StackEntry(discover="stacks/*", on_drift=OnDrift.REMEDIATE, var_files=("ci.tfvars",))

    app = discover_stacks(repo, [entry], defaults)[0]

    assert (app.on_merge, app.on_drift, app.drift_interval) == (OnMerge.PLAN, OnDrift.REMEDIATE, 600)
    assert app.var_files == ("ci.tfvars",)


def test_directories_sharing_a_name_are_named_after_their_full_path(repo):
    stacks = discover_stacks(repo, [StackEntry(discover="envs/*/*")], DEFAULTS)
    assert names_and_paths(stacks) == [
        ("dns", "envs/prod/dns"),
        ("envs-prod-network", "envs/prod/network"),
        ("envs-staging-network", "envs/staging/network"),
    ]


def test_a_discovered_name_taken_by_an_explicit_entry_falls_back_to_the_path(repo):
    entries = [StackEntry(path="core/network"), StackEntry(discover="envs/prod/*")]
    stacks = discover_stacks(repo, entries, DEFAULTS)
    assert names_and_paths(stacks) == [
        ("dns", "envs/prod/dns"),
        ("envs-prod-network", "envs/prod/network"),
        ("network", "core/network"),
    ]


def test_explicit_entry_overrides_the_discovered_stack_at_the_same_path(repo):
    entries = [
        StackEntry(discover="stacks/*"),
        StackEntry(path="stacks/app", name="frontend", on_merge=OnMerge.PLAN, env={"TF_VAR_x": "1"}),
    ]

    stacks = discover_stacks(repo, entries, DEFAULTS)

    assert names_and_paths(stacks) == [("db", "stacks/db"), ("frontend", "stacks/app")]
    frontend = stacks[1]
    assert frontend.on_merge is OnMerge.PLAN
    assert frontend.env == (("TF_VAR_x", "1"),)


def test_the_first_glob_matching_a_directory_decides_its_policy(repo):
    entries = [StackEntry(discover="stacks/app", on_merge=OnMerge.PLAN), StackEntry(discover="stacks/*")]
    stacks = discover_stacks(repo, entries, DEFAULTS)
    assert [(stack.name, stack.on_merge) for stack in stacks] == [
        ("app", OnMerge.PLAN),
        ("db", OnMerge.APPLY),
    ]


def test_a_glob_matching_nothing_is_logged_not_fatal(repo, caplog):
    with caplog.at_level(logging.WARNING, logger="tfops.stacks"):
        stacks = discover_stacks(
            repo, [StackEntry(discover="services/*"), StackEntry(path="core/network")], DEFAULTS
        )
    assert names_and_paths(stacks) == [("network", "core/network")]
    assert "services/*" in caplog.text


def test_hidden_directories_are_not_discovered_even_when_the_glob_names_them(repo):
    assert discover_stacks(repo, [StackEntry(discover=".github/*")], DEFAULTS) == []


def test_a_configured_stack_whose_folder_is_missing_is_refused_as_not_found_with_its_own_hint(repo):
    found = discover(repo, [StackEntry(path="stacks/ghost"), StackEntry(discover="stacks/*")], DEFAULTS)

    assert names_and_paths(list(found.stacks)) == [("app", "stacks/app"), ("db", "stacks/db")]
    [ghost] = found.refused
    assert (ghost.name, ghost.path, ghost.reason) == ("ghost", "stacks/ghost", Refusal.NOT_FOUND)
    assert str(ghost) == "stack 'ghost' (path 'stacks/ghost'): folder not found at the head"
    assert "leave" not in ghost.hint and "path" in ghost.hint  # not the hint about escaping paths
    with pytest.raises(StackPathError, match="folder not found at the head") as caught:
        discover_stacks(repo, [StackEntry(path="stacks/ghost")], DEFAULTS)
    assert caught.value.hint == ghost.hint


def test_explicit_entry_without_terraform_files_is_refused(repo):
    with pytest.raises(StackPathError, match=r"stack 'docs'.*holds no \*\.tf"):
        discover_stacks(repo, [StackEntry(path="stacks/docs")], DEFAULTS)


def test_the_repository_root_can_be_an_explicit_stack(tmp_path):
    root = make_tree(tmp_path / "single", ["main.tf"])
    stacks = discover_stacks(root, [StackEntry(path=".", name="single")], DEFAULTS)
    assert names_and_paths(stacks) == [("single", ".")]


def test_names_that_still_collide_refuse_both_stacks_and_only_them(tmp_path):
    root = make_tree(tmp_path / "r", ["p/q-r/s/main.tf", "p-q/r/s/main.tf", "other/main.tf"])

    found = discover(root, [StackEntry(discover="**")], DEFAULTS)

    assert names_and_paths(list(found.stacks)) == [("other", "other")]
    assert [(item.path, item.reason) for item in found.refused] == [
        ("p-q/r/s", Refusal.NAME_CLASH),
        ("p/q-r/s", Refusal.NAME_CLASH),
    ]
    with pytest.raises(ConfigError, match="stack name 'p-q-r-s' is used by"):
        discover_stacks(root, [StackEntry(discover="**")], DEFAULTS)


def test_odd_characters_in_directory_names_become_underscores(tmp_path):
    root = make_tree(tmp_path / "r", ["stacks/my app/main.tf"])
    assert discover_stacks(root, [StackEntry(discover="stacks/*")], DEFAULTS)[0].name == "my_app"


def test_a_stack_symlinked_outside_the_repository_is_refused(tmp_path, repo):
    outside = make_tree(tmp_path / "outside", ["main.tf"])
    os.symlink(outside, repo / "stacks" / "evil")

    with pytest.raises(StackPathError, match=r"stacks/evil.*resolves outside the repository"):
        discover_stacks(repo, [StackEntry(discover="stacks/*")], DEFAULTS)
    with pytest.raises(StackPathError, match="resolves outside the repository"):
        discover_stacks(repo, [StackEntry(path="stacks/evil")], DEFAULTS)


def test_one_folder_symlinked_outside_refuses_that_stack_and_the_others_are_discovered(tmp_path, repo):
    outside = make_tree(tmp_path / "outside", ["main.tf"])
    os.symlink(outside, repo / "stacks" / "evil")
    make_tree(repo, ["stacks/new/main.tf"])

    found = discover(repo, [StackEntry(discover="stacks/*")], DEFAULTS)

    assert [stack.name for stack in found.stacks] == ["app", "db", "new"]
    [evil] = found.refused
    assert (evil.name, evil.path, evil.reason) == ("evil", "stacks/evil", Refusal.OUTSIDE_REPOSITORY)
    assert str(outside) not in str(evil)  # refusals are shown on /readyz: never a host path


def test_a_tf_file_symlinked_to_a_file_outside_the_repository_refuses_its_stack(tmp_path, repo):
    secret = make_tree(tmp_path / "outside", ["steal.tf"]) / "steal.tf"
    os.symlink(secret, repo / "stacks" / "app" / "steal.tf")

    found = discover(repo, [StackEntry(discover="stacks/*"), StackEntry(path="core/network")], DEFAULTS)

    assert [stack.name for stack in found.stacks] == ["db", "network"]
    [app] = found.refused
    assert (app.name, app.reason) == ("app", Refusal.OUTSIDE_REPOSITORY)
    assert app.detail == "steal.tf is a symlink that resolves outside the repository"
    with pytest.raises(StackPathError, match=r"steal\.tf is a symlink"):
        discover_stacks(repo, [StackEntry(path="stacks/app")], DEFAULTS)


def test_a_var_file_symlinked_outside_the_repository_refuses_its_stack(tmp_path, repo):
    os.symlink(make_tree(tmp_path / "outside", ["x.tfvars"]) / "x.tfvars", repo / "shared" / "host.tfvars")
    entry = StackEntry(path="core/network", var_files=("../../shared/host.tfvars",))

    [refused] = discover(repo, [entry], DEFAULTS).refused

    assert refused.reason is Refusal.VAR_FILE_OUTSIDE


def test_a_refusal_survives_a_round_trip_through_json(tmp_path, repo):
    [ghost] = discover(repo, [StackEntry(path="stacks/ghost")], DEFAULTS).refused
    assert RefusedStack.from_dict(json.loads(json.dumps(ghost.to_dict()))) == ghost


def test_a_symlink_inside_the_repository_is_followed(repo):
    os.symlink(repo / "core" / "network", repo / "stacks" / "net")
    stacks = discover_stacks(repo, [StackEntry(discover="stacks/*")], DEFAULTS)
    assert "stacks/net" in [stack.path for stack in stacks]


def test_var_files_may_be_shared_from_the_repository_but_not_from_outside(repo):
    shared = StackEntry(path="core/network", var_files=("prod.tfvars", "../../shared/common.tfvars"))
    assert discover_stacks(repo, [shared], DEFAULTS)[0].var_files == (
        "prod.tfvars",
        "../../shared/common.tfvars",
    )

    escaping = StackEntry(path="core/network", var_files=("../../../secrets.tfvars",))
    with pytest.raises(
        StackPathError, match=re.escape("var file '../../../secrets.tfvars' is outside the repository")
    ):
        discover_stacks(repo, [escaping], DEFAULTS)


def test_stacks_come_back_sorted_by_name(repo):
    entries = [StackEntry(path="stacks/db", name="zeta"), StackEntry(path="stacks/app", name="alpha")]
    assert [stack.name for stack in discover_stacks(repo, entries, DEFAULTS)] == ["alpha", "zeta"]


# --------------------------------------------------------------------------- affected stacks

APP = Stack(name="app", path="stacks/app")
APPLICATION = Stack(name="application", path="stacks/application")
NETWORK = Stack(name="network", path="core/network", var_files=("prod.tfvars", "../../shared/common.tfvars"))
ALL = [APP, APPLICATION, NETWORK]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["stacks/app/main.tf"], [APP]),
        (["stacks/application/main.tf"], [APPLICATION]),  # "stacks/app" is not a prefix of it
        (["stacks/app"], [APP]),  # the directory itself (a submodule bump, a rename)
        (["stacks/app.tf", "stacks/README.md"], []),
        (["stacks/app/modules/x/variables.tf", "core/network/main.tf"], [APP, NETWORK]),
        (["./stacks/app/main.tf"], [APP]),
        (["shared/common.tfvars"], [NETWORK]),  # a var file shared from outside the stack
        (["shared/other.tfvars", "README.md", ""], []),
    ],
)
def test_a_stack_is_affected_by_changes_inside_its_directory(changed, expected):
    assert affected_stacks(ALL, changed) == expected


def test_a_stack_at_the_repository_root_is_affected_by_any_change():
    root = Stack(name="single", path=".")
    assert affected_stacks([root, APP], ["docs/x.md"]) == [root]


def test_affected_stacks_keep_the_given_order_and_appear_once():
    changed = iter(["core/network/a.tf", "stacks/app/a.tf", "stacks/app/b.tf"])  # any iterable
    assert affected_stacks([NETWORK, APP], changed) == [NETWORK, APP]


def test_the_path_prefix_detector_is_the_default_detector():
    assert PathPrefixDetector().affected(ALL, ["stacks/app/main.tf"]) == affected_stacks(
        ALL, ["stacks/app/main.tf"]
    )


def test_stack_env_is_the_entry_env_as_a_dict():
    stack = Stack(name="a", path="a", env=(("TF_VAR_region", "eu-west-1"), ("TF_VAR_size", "2")))
    assert stack_env(stack) == {"TF_VAR_region": "eu-west-1", "TF_VAR_size": "2"}


# ----------------------------------------------------------------------- AWS roles, secrets, backend config

PLAN_ROLE = "arn:aws:iam::111111111111:role/tfops-read"
APPLY_ROLE = "arn:aws:iam::111111111111:role/tfops-apply"
NETWORK_APPLY = "arn:aws:iam::222222222222:role/network-apply"


def stacks_from(repo: Path, **config) -> dict[str, Stack]:
    """The stacks the given tfops.yaml sections (as Settings takes them) give at `repo`, by name."""
    settings = Settings(**config)
    return {stack.name: stack for stack in discover_stacks(repo, settings.stacks, settings.defaults)}


def test_a_stack_giving_only_its_apply_role_keeps_the_default_plan_role_and_session(repo):
    defaults = {
        "aws": {
            "plan_role": PLAN_ROLE,
            "apply_role": APPLY_ROLE,
            "external_id_env": "TFOPS_AWS_EXTERNAL_ID",
            "session_duration": "2h",
        }
    }
    entries = [{"path": "core/network", "aws": {"apply_role": NETWORK_APPLY}}, {"path": "stacks/app"}]

    stacks = stacks_from(repo, defaults=defaults, stacks=entries)

    assert stacks["network"].aws == StackAws(
        plan_role=PLAN_ROLE,
        apply_role=NETWORK_APPLY,
        external_id_env="TFOPS_AWS_EXTERNAL_ID",
        session_duration=7200.0,
        attribution=False,
    )
    assert stacks["app"].aws == StackAws(PLAN_ROLE, APPLY_ROLE, "TFOPS_AWS_EXTERNAL_ID", 7200.0, False)


def test_a_stack_writing_a_null_role_runs_that_phase_with_the_daemons_own_identity(repo):
    stacks = stacks_from(
        repo,
        defaults={"aws": {"plan_role": PLAN_ROLE, "apply_role": APPLY_ROLE}},
        stacks=[{"path": "core/network", "aws": {"plan_role": None, "apply_role": None}}],
    )
    assert stacks["network"].aws == StackAws()
    assert not stacks["network"].aws.has_roles


def test_a_stack_without_any_aws_configuration_keeps_the_daemons_identity(repo):
    [app, db] = discover_stacks(repo, [StackEntry(discover="stacks/*")], DEFAULTS)
    assert app.aws == db.aws == StackAws()
    assert (app.secrets, app.backend_config) == ((), ())


@pytest.mark.parametrize(
    ("global_switch", "defaults_value", "stack_value", "expected"),
    [
        (True, None, None, True),  # aws.attribution reaches every stack through the defaults
        (True, False, None, False),  # defaults.aws.attribution wins over aws.attribution
        (False, False, True, True),  # and the stack's own wins over both
        (True, True, False, False),
        (True, False, "null", False),  # an explicit null inherits like leaving it out
        (False, None, None, False),
    ],
)
def test_drift_attribution_is_the_stacks_else_the_defaults_else_the_aws_sections(
    repo, global_switch, defaults_value, stack_value, expected
):
    defaults = {} if defaults_value is None else {"aws": {"attribution": defaults_value}}
    entry: dict = {"path": "core/network"}
    if stack_value is not None:
        entry["aws"] = {"attribution": None if stack_value == "null" else stack_value}

    stacks = stacks_from(repo, aws={"attribution": global_switch}, defaults=defaults, stacks=[entry])

    assert stacks["network"].aws.attribution is expected


def test_a_stacks_secrets_merge_over_the_defaults_as_sorted_pairs(repo):
    stacks = stacks_from(
        repo,
        defaults={
            "secrets": {"TF_VAR_db_password": "ssm:/prod/db/password", "TF_VAR_token": "ssm:/shared/token"}
        },
        stacks=[
            {
                "path": "core/network",
                "secrets": {"TF_VAR_token": "secretsmanager:prod/api#token", "A_KEY": "ssm:/a"},
            },
            {"path": "stacks/app"},
        ],
    )

    assert stacks["network"].secrets == (
        ("A_KEY", "ssm:/a"),
        ("TF_VAR_db_password", "ssm:/prod/db/password"),
        ("TF_VAR_token", "secretsmanager:prod/api#token"),
    )
    assert stacks["app"].secrets == (
        ("TF_VAR_db_password", "ssm:/prod/db/password"),
        ("TF_VAR_token", "ssm:/shared/token"),
    )


def test_backend_config_files_keep_their_order_and_may_be_shared_from_the_repository(repo):
    entry = StackEntry(
        path="core/network", backend_config=("backend/prod.s3.tfbackend", "../../shared/lock.tfbackend")
    )

    [network] = discover_stacks(repo, [entry], DEFAULTS)

    assert network.backend_config == ("backend/prod.s3.tfbackend", "../../shared/lock.tfbackend")
    assert affected_stacks([network, APP], ["shared/lock.tfbackend"]) == [network]  # input to init


def test_a_backend_config_file_outside_the_repository_refuses_its_stack(tmp_path, repo):
    escaping = StackEntry(path="core/network", backend_config=("../../../prod.s3.tfbackend",))
    os.symlink(
        make_tree(tmp_path / "outside", ["x.tfbackend"]) / "x.tfbackend", repo / "shared" / "host.tfbackend"
    )
    linked = StackEntry(path="stacks/app", backend_config=("../../shared/host.tfbackend",))

    refused = discover(repo, [escaping, linked], DEFAULTS).refused

    assert [(item.name, item.reason) for item in refused] == [
        ("app", Refusal.VAR_FILE_OUTSIDE),
        ("network", Refusal.VAR_FILE_OUTSIDE),
    ]
    assert refused[0].detail.startswith("backend config file '../../shared/host.tfbackend' is a symlink")
    assert refused[1].detail == "backend config file '../../../prod.s3.tfbackend' is outside the repository"
    assert "backend config files" in refused[0].hint
