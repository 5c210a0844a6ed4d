"""tfops.terraform.plan on real `terraform show -json` output (tests/fixtures/plans, see its README)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfops.errors import PlanFormatError
from tfops.models import AttributeChange, PlanSummary, ResourceChange
from tfops.terraform.plan import (
    REDACTED,
    SENSITIVE,
    UNKNOWN,
    render_text,
    scrub,
    secrets_in,
    summarize,
    summary_from_dict,
    summary_to_dict,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
CANARY = "canary-s3cr3t-value-42"
ALL_FIXTURES = sorted(path.stem for path in FIXTURES.glob("*.json"))
FIXTURES_WITH_CANARY = [
    "sensitive",
    "sensitive_create",
    "sensitive_update",
    "update",
    "drift",
    "deleted_outside",
]


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def attributes_of(change: ResourceChange) -> dict[str, tuple[Any, Any]]:
    return {attribute.path: (attribute.before, attribute.after) for attribute in change.attributes}


def only(changes: tuple[ResourceChange, ...], address: str) -> ResourceChange:
    [change] = [change for change in changes if change.address == address]
    return change


def test_fixtures_come_from_terraform_1_0_3():
    assert set(FIXTURES_WITH_CANARY) <= set(ALL_FIXTURES)
    assert {load(name)["terraform_version"] for name in ALL_FIXTURES} == {"1.0.3"}


# --- what each scenario did ----------------------------------------------------------------------------


def test_create_lists_every_new_instance_of_count_and_for_each():
    summary = summarize(load("create"))

    assert summary.counts == {"create": 5, "update": 0, "delete": 0, "replace": 0}
    assert [change.address for change in summary.changes] == [
        "null_resource.counted[0]",
        "null_resource.counted[1]",
        'null_resource.each["blue"]',
        'null_resource.each["green"]',
        "null_resource.single",
    ]
    assert summary.output_changes == ("single_id",)
    assert summary.drift == ()


def test_created_resource_shows_its_values_and_unknown_id():
    single = only(summarize(load("create")).changes, "null_resource.single")

    assert single.action == "create"
    assert single.type == "null_resource"
    assert attributes_of(single) == {
        "id": (None, UNKNOWN),
        "triggers.owner": (None, "platform"),
        "triggers.size": (None, "small"),
    }


def test_replace_shows_the_changed_trigger_and_skips_unchanged_resources():
    summary = summarize(load("replace"))

    [web] = summary.changes
    assert (web.address, web.action) == ("null_resource.web", "replace")
    attributes = attributes_of(web)
    assert attributes["triggers.image"] == ("nginx:1.20", "nginx:1.21")
    assert attributes["id"][1] == UNKNOWN
    assert "triggers.port" not in attributes
    assert summary.counts["replace"] == 1


def test_delete_lists_the_destroyed_resource_without_attributes():
    [web] = summarize(load("delete")).changes

    assert (web.address, web.action, web.attributes) == ("null_resource.web", "delete", ())


def test_no_op_plan_has_no_changes():
    summary = summarize(load("no_op"))

    assert not summary.has_changes
    assert not summary.has_drift
    assert render_text(summary).startswith("No changes.")


def test_resources_in_a_child_module_keep_their_module_address():
    summary = summarize(load("module"))

    in_module = [change for change in summary.changes if change.module_address == "module.network"]
    assert [change.address for change in in_module] == [
        "module.network.null_resource.subnet[0]",
        "module.network.null_resource.subnet[1]",
        "module.network.null_resource.vpc",
    ]
    assert only(summary.changes, "null_resource.root").module_address is None


def test_values_known_only_after_apply_are_shown_as_unknown():
    summary = summarize(load("module"))

    assert attributes_of(only(summary.changes, "null_resource.root"))["triggers"] == (None, UNKNOWN)
    assert attributes_of(only(summary.changes, "module.network.null_resource.vpc"))["triggers.name"] == (
        None,
        "core",
    )


def test_update_in_place_lists_only_the_attributes_that_change():
    [site] = summarize(load("update")).changes

    assert (site.address, site.action) == ("demo_object.site", "update")
    assert attributes_of(site) == {"content": ("hello", "hello, world"), "tags.env": ("dev", "prod")}


def test_drift_is_reported_with_changed_attributes_apart_from_the_changes():
    summary = summarize(load("drift"))

    [drifted] = summary.drift
    assert (drifted.address, drifted.action) == ("demo_object.site", "update")
    assert attributes_of(drifted) == {"content": ("hello", "edited by hand"), "tags.env": ("dev", "hotfix")}
    [revert] = summary.changes
    assert attributes_of(revert) == {"content": ("edited by hand", "hello"), "tags.env": ("hotfix", "dev")}
    assert summary.has_drift


def test_object_deleted_outside_terraform_is_drift_and_planned_again():
    summary = summarize(load("deleted_outside"))

    [gone] = summary.drift
    assert (gone.address, gone.action, gone.attributes) == ("demo_object.site", "delete", ())
    [recreate] = summary.changes
    assert (recreate.address, recreate.action) == ("demo_object.site", "create")
    assert attributes_of(recreate)["secret"] == (None, SENSITIVE)
    assert "(deleted outside Terraform)" in render_text(summary)


def test_plans_without_drift_have_none():
    for name in ("create", "replace", "update", "sensitive"):
        assert summarize(load(name)).drift == (), name


# --- sensitive values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES_WITH_CANARY)
def test_sensitive_canary_never_leaves_the_plan(name):
    plan = load(name)
    assert CANARY in json.dumps(plan), "the fixture must carry the canary for this test to mean anything"

    summary = summarize(plan)

    assert CANARY not in json.dumps(summary_to_dict(summary))
    assert CANARY not in render_text(summary)
    assert CANARY in secrets_in(plan)


def test_scrub_removes_the_canary_from_log_text():
    secrets = secrets_in(load("sensitive"))
    log = f'null_resource.db: Creating... [triggers.password="{CANARY}"]\nError: bad {CANARY}!'

    scrubbed = scrub(log, secrets)

    assert CANARY not in scrubbed
    assert (
        scrubbed == f'null_resource.db: Creating... [triggers.password="{REDACTED}"]\nError: bad {REDACTED}!'
    )


def test_changed_sensitive_attribute_is_shown_without_its_values():
    plan = load("sensitive_update")
    summary = summarize(plan)

    assert [change.address for change in summary.changes] == ["demo_object.other", "demo_object.site"]
    for change in summary.changes:
        assert attributes_of(change) == {"secret": (SENSITIVE, SENSITIVE)}
    assert secrets_in(plan) >= {CANARY, "first-s3cr3t-value-01"}
    assert "first-s3cr3t-value-01" not in render_text(summary)


def test_sensitive_variable_in_a_trigger_and_a_sensitive_output():
    summary = summarize(load("sensitive_create"))

    [db] = summary.changes
    assert attributes_of(db)["triggers.password"] == (None, SENSITIVE)
    assert attributes_of(db)["triggers.release"] == (None, "v1")
    assert summary.output_changes == ("password", "release")


def test_unchanged_sensitive_trigger_is_not_listed_in_a_replace():
    [db] = summarize(load("sensitive")).changes

    assert db.action == "replace"
    assert set(attributes_of(db)) == {"id", "triggers.release"}


def test_default_of_a_sensitive_variable_is_a_secret():
    plan = {
        "format_version": "1.0",
        "configuration": {
            "root_module": {
                "module_calls": {
                    "db": {
                        "module": {"variables": {"pw": {"default": "child-default-pw", "sensitive": True}}}
                    }
                },
                "variables": {"token": {"default": "root-default-token", "sensitive": True}, "region": {}},
            }
        },
        "variables": {"token": {"value": "given-token-value"}, "region": {"value": "eu-west-1"}},
    }

    assert secrets_in(plan) == {"child-default-pw", "given-token-value"} | {"root-default-token"}


def test_secrets_skip_short_values_and_include_numbers_as_text():
    plan = {
        "format_version": "1.0",
        "resource_changes": [
            {
                "address": "x.y",
                "change": {
                    "actions": ["create"],
                    "before": None,
                    "after": {"pin": 1234, "short": "abc", "flag": True, "list": ["long-secret", "ok"]},
                    "after_sensitive": {"pin": True, "short": True, "flag": True, "list": [True, False]},
                },
            }
        ],
    }

    assert secrets_in(plan) == {"1234", "long-secret"}


def test_value_repeated_outside_its_sensitive_mark_is_still_hidden():
    plan = {
        "format_version": "1.0",
        "resource_changes": [
            {
                "address": "x.y",
                "type": "x",
                "change": {
                    "actions": ["create"],
                    "before": None,
                    "after": {"password": "hunter2-secret", "note": "password is hunter2-secret"},
                    "after_sensitive": {"password": True},
                },
            }
        ],
    }

    [change] = summarize(plan).changes

    assert attributes_of(change) == {
        "note": (None, f"password is {REDACTED}"),
        "password": (None, SENSITIVE),
    }


def test_whole_subtree_marked_sensitive_is_one_hidden_attribute():
    plan = synthetic_plan(
        "update",
        before={"config": {"user": "admin", "pass": "old-pass"}},
        after={"config": {"user": "admin", "pass": "new-pass"}},
        before_sensitive={"config": True},
        after_sensitive={"config": True},
    )

    [change] = summarize(plan).changes

    assert attributes_of(change) == {"config": (SENSITIVE, SENSITIVE)}


def test_scrub_masks_overlapping_secrets_whole():
    assert scrub("x abcd1234wxyz y", {"abcd1234", "1234wxyz"}) == f"x {REDACTED} y"


def test_scrub_applies_patterns_after_secrets():
    token = re.compile(r"ghp_[A-Za-z0-9]{8,}")

    assert (
        scrub("token ghp_abcdefgh12 and pw-1234", {"pw-1234"}, [token]) == f"token {REDACTED} and {REDACTED}"
    )


def test_patterns_redact_matching_values_in_the_summary():
    summary = summarize(load("update"), patterns=[re.compile(r"hel+o")])

    [site] = summary.changes
    assert attributes_of(site)["content"] == (REDACTED, REDACTED)
    assert attributes_of(site)["tags.env"] == ("dev", "prod")
    assert "hello" not in render_text(summary)


# --- shapes, ordering, formats -------------------------------------------------------------------------


def synthetic_plan(action: str, *, format_version: str = "1.2", **change: Any) -> dict[str, Any]:
    actions = {"replace": ["delete", "create"]}.get(action, [action])
    return {
        "format_version": format_version,
        "terraform_version": "1.11.0",
        "resource_changes": [{"address": "t.r", "type": "t", "change": {"actions": actions, **change}}],
    }


def test_nested_paths_are_flat_and_readable():
    plan = synthetic_plan(
        "update",
        before={"rule": [{"port": 80}, {"port": 443}], "tags": {"kubernetes.io/role": "a", "env": "dev"}},
        after={"rule": [{"port": 8080}, {"port": 443}, {"port": 22}], "tags": {"kubernetes.io/role": "b"}},
        after_unknown={"rule": [{}, {}, {}]},
    )

    [change] = summarize(plan).changes

    assert attributes_of(change) == {
        "rule[0].port": (80, 8080),
        "rule[2].port": (None, 22),
        'tags["kubernetes.io/role"]': ("a", "b"),
        "tags.env": ("dev", None),
    }


def test_unknown_parts_of_a_value_absent_from_after_are_listed():
    plan = synthetic_plan(
        "create", before=None, after={"n": 1}, after_unknown={"x": {"y": True}, "blk": [{"id": True}]}
    )

    [change] = summarize(plan).changes

    assert attributes_of(change) == {"n": (None, 1), "x.y": (None, UNKNOWN), "blk[0].id": (None, UNKNOWN)}


def test_destruction_comes_first_then_creation_then_updates():
    plan = {
        "format_version": "1.0",
        "resource_changes": [
            {"address": address, "type": "t", "change": {"actions": actions, "before": None, "after": None}}
            for address, actions in [
                ("t.update", ["update"]),
                ("t.create", ["create"]),
                ("t.read", ["read"]),
                ("t.b_delete", ["delete"]),
                ("t.cbd", ["create", "delete"]),
                ("t.a_delete", ["delete"]),
                ("t.replace", ["delete", "create"]),
                ("t.same", ["no-op"]),
            ]
        ],
    }

    changes = summarize(plan).changes

    assert [(change.address, change.action) for change in changes] == [
        ("t.cbd", "replace"),
        ("t.replace", "replace"),
        ("t.a_delete", "delete"),
        ("t.b_delete", "delete"),
        ("t.create", "create"),
        ("t.update", "update"),
    ]


def test_import_without_changes_counts_as_a_change():
    plan = synthetic_plan("no-op", before={"id": "i-1"}, after={"id": "i-1"}, importing={"id": "i-1"})

    summary = summarize(plan)

    assert [change.action for change in summary.changes] == ["import"]
    assert render_text(summary).startswith(
        "Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy, 1 to import"
    )


def test_errored_plan_is_flagged():
    summary = summarize({**load("create"), "errored": True})

    assert summary.errored
    assert "errored" in render_text(summary)
    assert not summarize(load("create")).errored


@pytest.mark.parametrize("version", ["0.1", "0.2", "1.0", "1.2"])
def test_format_versions_0_and_1_are_read(version):
    assert summarize({**load("replace"), "format_version": version}).format_version == version


@pytest.mark.parametrize("version", ["2.0", "10.1", "", None, 1.0, "one"])
def test_other_format_versions_are_refused_naming_what_was_found(version):
    plan = {**load("replace"), "format_version": version}

    with pytest.raises(PlanFormatError) as raised:
        summarize(plan)

    message = str(raised.value)
    assert "0.x" in message and "1.x" in message
    assert repr(version) in message or str(version) in message


def test_missing_format_version_is_refused():
    plan = load("replace")
    del plan["format_version"]

    with pytest.raises(PlanFormatError, match="format_version"):
        summarize(plan)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_summary_round_trips_through_json(name):
    summary = summarize(load(name))

    data = json.loads(json.dumps(summary_to_dict(summary)))

    assert summary_from_dict(data) == summary
    assert data["counts"] == summary.counts


def test_render_text_headline_drift_and_changes():
    text = render_text(summarize(load("drift")))

    assert text.startswith("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy")
    drift_part, changes_part = text.split("Changes:")
    assert "Drift (changed outside Terraform)" in drift_part
    assert '  ~ content: "hello" → "edited by hand"' in drift_part
    assert '  ~ tags.env: "hotfix" → "dev"' in changes_part


def test_render_text_uses_a_symbol_per_action():
    summary = PlanSummary(
        terraform_version="1.0.3",
        format_version="0.2",
        changes=(
            ResourceChange("a.replaced", "a", "replace"),
            ResourceChange("a.gone", "a", "delete"),
            ResourceChange("a.new", "a", "create", (AttributeChange("name", None, "n"),)),
            ResourceChange("a.changed", "a", "update"),
        ),
    )

    lines = render_text(summary).splitlines()

    assert lines[0] == "Plan: 1 to add, 1 to change, 1 to replace, 1 to destroy."
    assert "  -/+ a.replaced" in lines
    assert "  - a.gone" in lines
    assert "  + a.new" in lines
    assert '      + name = "n"' in lines
    assert "  ~ a.changed" in lines


def test_render_text_truncates_long_plans():
    text = render_text(summarize(load("create")), max_resources=3)

    assert "… and 2 more" in text
    assert "null_resource.counted[0]" in text
    assert "null_resource.single" not in text


# --- properties ----------------------------------------------------------------------------------------

# Tokens are long and distinct so that one can never be found inside another or inside the markers.
TOKENS = st.integers(0, 40).map(lambda n: f"val-{n:03d}-q")
NUMBERS = st.integers(1000, 1040)
LEAVES = st.one_of(TOKENS, NUMBERS, st.none())
KEYS = st.sampled_from(["a", "b", "tags", "x.y", "rule"])
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)


@st.composite
def marks_for(draw, value: Any) -> Any:
    """A before_sensitive/after_sensitive-shaped mark that mirrors `value`."""
    choice = draw(st.sampled_from(["true", "false", "nested"]))
    if choice == "true":
        return True
    if choice == "false" or not isinstance(value, dict | list):
        return False
    if isinstance(value, dict):
        return {key: draw(marks_for(child)) for key, child in value.items() if draw(st.booleans())}
    return [draw(marks_for(child)) for child in value]


def leaves_under_marks(value: Any, mark: Any) -> list[Any]:
    if mark is True:
        if isinstance(value, dict):
            return [leaf for child in value.values() for leaf in leaves_under_marks(child, True)]
        if isinstance(value, list):
            return [leaf for child in value for leaf in leaves_under_marks(child, True)]
        return [] if value is None else [value]
    if isinstance(mark, dict) and isinstance(value, dict):
        return [leaf for key, sub in mark.items() for leaf in leaves_under_marks(value.get(key), sub)]
    if isinstance(mark, list) and isinstance(value, list):
        return [
            leaf for child, sub in zip(value, mark, strict=False) for leaf in leaves_under_marks(child, sub)
        ]
    return []


def shown_leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for child in value.values() for leaf in shown_leaves(child)]
    if isinstance(value, list):
        return [leaf for child in value for leaf in shown_leaves(child)]
    return [value]


@st.composite
def changes_with_marks(draw) -> dict[str, Any]:
    before = draw(st.dictionaries(KEYS, VALUES, max_size=4))
    after = draw(st.one_of(st.dictionaries(KEYS, VALUES, max_size=4), st.just(copy.deepcopy(before))))
    return {
        "actions": draw(st.sampled_from([["update"], ["create"], ["delete", "create"]])),
        "before": before,
        "after": after,
        "before_sensitive": draw(marks_for(before)),
        "after_sensitive": draw(marks_for(after)),
        "after_unknown": draw(st.one_of(st.just({}), marks_for(after))),
    }


@settings(max_examples=300, deadline=None)
@given(change=changes_with_marks(), in_drift=st.booleans())
def test_no_value_under_a_sensitive_mark_reaches_the_summary(change, in_drift):
    entry = {"address": "t.r", "type": "t", "change": change}
    plan = {"format_version": "1.0", ("resource_drift" if in_drift else "resource_changes"): [entry]}
    hidden = leaves_under_marks(change["before"], change["before_sensitive"]) + leaves_under_marks(
        change["after"], change["after_sensitive"]
    )

    summary = summarize(plan)

    shown = [
        leaf
        for resource in summary.changes + summary.drift
        for attribute in resource.attributes
        for leaf in shown_leaves(attribute.before) + shown_leaves(attribute.after)
    ]
    assert not set(hidden) & set(shown)
    text = json.dumps(summary_to_dict(summary)) + render_text(summary)
    assert not [value for value in hidden if str(value) in text]


@settings(max_examples=200, deadline=None)
@given(
    secrets=st.sets(st.text("0123456789XYZ_-", min_size=4, max_size=10), max_size=4),
    noise=st.lists(st.text("0123456789XYZ_- \n", max_size=8), max_size=6),
)
def test_scrub_leaves_no_secret_in_text(secrets, noise):
    text = "|".join(noise + sorted(secrets) + noise[::-1])

    scrubbed = scrub(text, secrets)

    assert not [secret for secret in secrets if secret in scrubbed]
    if not any(secret in text for secret in secrets):
        assert scrubbed == text


def test_drift_of_a_provider_sensitive_attribute_is_masked_with_the_marks_from_resource_changes():
    # Terraform 1.0.3 does not mark provider-sensitive attributes in resource_drift; the
    # old value below appears nowhere else in the plan, so only the borrowed mark hides it.
    old, console, new = "old-secret-in-state-1", "console-secret-22", "new-secret-from-code-3"
    plan = {
        "format_version": "0.2",
        "terraform_version": "1.0.3",
        "resource_drift": [
            {
                "address": "demo_object.db",
                "type": "demo_object",
                "change": {
                    "actions": ["update"],
                    "before": {"name": "db", "secret": old},
                    "after": {"name": "db", "secret": console},
                    "before_sensitive": {},
                    "after_sensitive": {},
                },
            }
        ],
        "resource_changes": [
            {
                "address": "demo_object.db",
                "type": "demo_object",
                "change": {
                    "actions": ["update"],
                    "before": {"name": "db", "secret": console},
                    "after": {"name": "db", "secret": new},
                    "before_sensitive": {"secret": True},
                    "after_sensitive": {"secret": True},
                    "after_unknown": {},
                },
            }
        ],
    }

    summary = summarize(plan)

    text = json.dumps(summary_to_dict(summary)) + render_text(summary)
    for secret in (old, console, new):
        assert secret not in text
    (drifted,) = summary.drift
    assert [(a.path, a.before, a.after) for a in drifted.attributes] == [("secret", SENSITIVE, SENSITIVE)]
    assert old in secrets_in(plan)
