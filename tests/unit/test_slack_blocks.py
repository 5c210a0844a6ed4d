"""tfops.notify.blocks: a run as one Slack message, within Slack's limits for every input.

The limits are checked here independently of the module's own bookkeeping (`slack_violations`),
the way the Slack API would reject a message.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfops.models import (
    AttributeChange,
    PlanSummary,
    ResourceChange,
    Run,
    RunKind,
    RunStatus,
    Trigger,
    TriggerSource,
)
from tfops.notify.blocks import (
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    STATUS_EMOJI,
    CommitInfo,
    DecisionInfo,
    RunMessage,
    action_value,
    escape_mrkdwn,
    format_mention,
    parse_action_value,
    render_run,
)
from tfops.terraform.plan import REDACTED, SENSITIVE, UNKNOWN, summarize

PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
FIXTURE_CANARY = "canary-s3cr3t-value-42"  # a sensitive value inside the raw fixture plans
CANARY = "canary-run-field-9f3b71"  # planted in run fields the renderer must never read
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PLAN_SHA = "f" * 64
GROUP = "S0PLATFORM"

# Slack's limits, restated here rather than imported: the test is the API's stand-in.
SLACK = {
    "blocks": 50,
    "section": 3000,
    "context_element": 3000,
    "context_elements": 10,
    "header": 150,
    "button_text": 75,
    "button_value": 2000,
    "action_id": 255,
    "confirm_title": 100,
    "confirm_text": 300,
    "confirm_button": 30,
    "total_text": 12000,
    "fallback": 3000,
    "thread_note": 3000,
}


# --- checking a message the way Slack would ------------------------------------------------------------


def size(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def texts_of(node: Any) -> list[str]:
    """Every "text" string anywhere in the blocks: what Slack's total-text bound counts."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "text" and isinstance(value, str) else texts_of(value)
    elif isinstance(node, list):
        for item in node:
            found += texts_of(item)
    return found


def slack_violations(message: RunMessage) -> list[str]:
    problems = []

    def check(what: str, text: str, limit: int) -> None:
        if size(text) > limit:
            problems.append(f"{what}: {size(text)} > {limit}")

    if len(message.blocks) > SLACK["blocks"]:
        problems.append(f"{len(message.blocks)} blocks")
    for block in message.blocks:
        if block["type"] == "header":
            check("header", block["text"]["text"], SLACK["header"])
        elif block["type"] == "section":
            check("section", block["text"]["text"], SLACK["section"])
        elif block["type"] == "context":
            if not 0 < len(block["elements"]) <= SLACK["context_elements"]:
                problems.append(f"context with {len(block['elements'])} elements")
            for element in block["elements"]:
                check("context element", element["text"], SLACK["context_element"])
        elif block["type"] == "actions":
            for button in block["elements"]:
                check("button text", button["text"]["text"], SLACK["button_text"])
                check("button value", button["value"], SLACK["button_value"])
                check("action_id", button["action_id"], SLACK["action_id"])
                if confirm := button.get("confirm"):
                    check("confirm title", confirm["title"]["text"], SLACK["confirm_title"])
                    check("confirm text", confirm["text"]["text"], SLACK["confirm_text"])
                    check("confirm button", confirm["confirm"]["text"], SLACK["confirm_button"])
                    check("deny button", confirm["deny"]["text"], SLACK["confirm_button"])
        else:
            problems.append(f"unexpected block type {block['type']}")
    total = sum(size(text) for text in texts_of(message.blocks))
    if total > SLACK["total_text"]:
        problems.append(f"total text {total}")
    if not message.text.strip():
        problems.append("empty fallback text")
    check("fallback text", message.text, SLACK["fallback"])
    for note in message.thread_notes:
        check("thread note", note, SLACK["thread_note"])
    return problems


def shown(message: RunMessage) -> str:
    """Everything a reader of the channel sees in the message itself."""
    return "\n".join(texts_of(message.blocks))


def buttons(message: RunMessage) -> list[dict[str, Any]]:
    return [
        element for block in message.blocks if block["type"] == "actions" for element in block["elements"]
    ]


def everything_sent(message: RunMessage) -> str:
    return json.dumps(dataclasses.asdict(message), ensure_ascii=False)


def without_mentions(text: str, mention: str | None) -> str:
    return text.replace(format_mention(mention), "") if mention else text


# --- building inputs -----------------------------------------------------------------------------------


def make_run(status: RunStatus = RunStatus.PLANNED, kind: RunKind = RunKind.DEPLOY, **fields: Any) -> Run:
    defaults: dict[str, Any] = {
        "id": 42,
        "stack": "network",
        "kind": kind,
        "status": status,
        "trigger": Trigger(TriggerSource.POLL, actor="poll", note=CANARY),
        "commit_sha": COMMIT,
        "plan_sha256": PLAN_SHA,
        "summary": {"raw": CANARY},
        "log_path": f"/var/lib/tfops/runs/{CANARY}.log",
        "error": f"Error: {CANARY}",
    }
    return Run(**{**defaults, **fields})


def make_summary(*changes: ResourceChange, drift: tuple[ResourceChange, ...] = ()) -> PlanSummary:
    return PlanSummary(terraform_version="1.0.3", format_version="0.2", changes=changes, drift=drift)


def many(action: str, count: int, *, attributes: int = 0, prefix: str = "null_resource.r") -> list:
    return [
        ResourceChange(
            address=f"{prefix}[{index}]",
            type="null_resource",
            action=action,
            attributes=tuple(
                AttributeChange(path=f"triggers.k{a}", before=f"old-{a}" * 10, after=f"new-{a}" * 10)
                for a in range(attributes)
            ),
        )
        for index in range(count)
    ]


COMMIT_INFO = CommitInfo(sha=COMMIT, subject="Widen the subnet", author="Dana Ops")


# --- scenarios -----------------------------------------------------------------------------------------


def test_a_thousand_resource_plan_fits_slack_and_attaches_the_whole_plan():
    changes = many("replace", 100, attributes=4) + many("create", 700, attributes=6, prefix="null_resource.c")
    changes += many("delete", 200, prefix="null_resource.d")
    summary = make_summary(*changes)

    message = render_run(make_run(), summary, commit=COMMIT_INFO)

    assert slack_violations(message) == []
    assert "… and" in shown(message)
    assert message.file is not None
    name, content = message.file
    assert name == "tfops-run-42-network-plan.txt"
    for address in ("null_resource.r[99]", "null_resource.c[699]", "null_resource.d[199]"):
        assert address in content
        assert address not in shown(message)
    assert "Plan: 700 to add, 0 to change, 100 to replace, 200 to destroy." in content


def test_a_small_plan_is_shown_whole_and_uploads_nothing():
    summary = make_summary(*many("create", 3, attributes=2), *many("update", 2, prefix="aws_s3_bucket.b"))

    message = render_run(make_run(), summary, commit=COMMIT_INFO)

    assert message.file is None
    assert "… and" not in shown(message)
    assert all(f"null_resource.r[{index}]" in shown(message) for index in range(3))


def test_failed_run_puts_the_error_tail_in_the_thread_and_pages_the_group():
    error = "\n".join(f"line {index}: provider said something long" for index in range(2000))
    error += "\nError: creating bucket: <AccessDenied> & no retry"
    run = make_run(RunStatus.FAILED)

    message = render_run(
        run, None, commit=COMMIT_INFO, mention=GROUP, error_tail=error, reason="terraform apply exited 1"
    )

    assert slack_violations(message) == []
    [note] = message.thread_notes
    assert note.endswith("Error: creating bucket: &lt;AccessDenied&gt; &amp; no retry\n```")
    assert "line 0:" not in note and "line 1999:" in note
    assert f"<!subteam^{GROUP}>" in shown(message)
    assert message.text.startswith(f"<!subteam^{GROUP}>")
    assert "*Reason:* terraform apply exited 1" in shown(message)
    assert buttons(message) == []


def test_drift_run_shows_each_changed_attribute_before_and_after():
    raw_plan = json.loads((PLANS / "drift.json").read_text())
    summary = summarize(raw_plan)
    run = make_run(RunStatus.PLANNED, RunKind.DRIFT, trigger=Trigger(TriggerSource.DRIFT_TIMER))

    message = render_run(run, summary, commit=COMMIT_INFO, reason="on_drift: notify")

    text = shown(message)
    assert '`content`: `"hello"` → `"edited by hand"`' in text
    assert '`tags.env`: `"dev"` → `"hotfix"`' in text
    assert text.index("Drift — changed outside Terraform") < text.index("Update in place")
    assert FIXTURE_CANARY in json.dumps(raw_plan)
    assert FIXTURE_CANARY not in everything_sent(message)


def test_drift_that_deleted_a_resource_says_so():
    summary = summarize(json.loads((PLANS / "deleted_outside.json").read_text()))
    run = make_run(RunStatus.PLANNED, RunKind.DRIFT)

    message = render_run(run, summary, commit=None)

    assert "`- demo_object.site` — _deleted outside Terraform_" in shown(message)
    assert FIXTURE_CANARY not in everything_sent(message)


def test_sensitive_values_show_only_as_redacted_markers():
    summary = summarize(json.loads((PLANS / "sensitive_update.json").read_text()))
    run = make_run(RunStatus.PLANNED, RunKind.DRIFT)

    message = render_run(run, summary, commit=None)

    assert FIXTURE_CANARY not in everything_sent(message)
    assert message.file is None or FIXTURE_CANARY not in message.file[1]


def test_approved_run_shows_who_approved_when_and_how():
    decisions = [
        DecisionInfo("approved", "Alice Adams", "U0ALICE", datetime(2024, 5, 1, 12, 30), "slack"),
        DecisionInfo(
            "approved", "bob", "bob", datetime(2024, 5, 1, 14, 45, tzinfo=timezone(timedelta(hours=2))), "cli"
        ),
    ]

    message = render_run(
        make_run(RunStatus.APPLYING), make_summary(), commit=COMMIT_INFO, decisions=decisions
    )

    text = shown(message)
    assert "Approved by *Alice Adams* (`U0ALICE`) at 2024-05-01 12:30 UTC via Slack" in text
    assert "Approved by *bob* (`bob`) at 2024-05-01 12:45 UTC via the CLI" in text
    assert buttons(message) == []


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=5))), "at 0001-01-01 00:00+05:00"),
        (datetime.max.replace(tzinfo=timezone(timedelta(hours=-3))), "at 9999-12-31 23:59-03:00"),
    ],
)
def test_a_decision_time_at_the_edge_of_the_calendar_is_shown_as_given(moment, expected):
    decision = DecisionInfo("approved", "Alice", "U0ALICE", moment, "cli")

    message = render_run(make_run(RunStatus.APPROVED), None, commit=None, decisions=[decision])

    assert f"Approved by *Alice* (`U0ALICE`) {expected} via the CLI" in shown(message)


def test_rejected_run_shows_who_rejected():
    decision = DecisionInfo("rejected", "Carol", "U0CAROL", datetime(2024, 5, 2, 9, 0, tzinfo=UTC), "slack")

    message = render_run(make_run(RunStatus.REJECTED), make_summary(), commit=None, decisions=[decision])

    assert ":x: Rejected by *Carol* (`U0CAROL`) at 2024-05-02 09:00 UTC via Slack" in shown(message)
    assert "no entry" in STATUS_EMOJI[RunStatus.REJECTED].replace("_", " ")


def test_approval_request_carries_the_binding_in_buttons_and_pages_the_approvers():
    run = make_run(RunStatus.AWAITING_APPROVAL)
    summary = make_summary(*many("update", 2))
    approval = DecisionInfo("approved", "Alice", "U0ALICE", datetime(2024, 5, 1, 12, 0), "slack")

    message = render_run(
        run,
        summary,
        commit=COMMIT_INFO,
        decisions=[approval],
        awaiting_approval=True,
        approvals_required=2,
        mention="<@U0ONCALL>",
        reason="on_merge: ask",
    )

    approve, reject = buttons(message)
    assert (approve["action_id"], approve["style"]) == (APPROVE_ACTION_ID, "primary")
    assert (reject["action_id"], reject["style"]) == (REJECT_ACTION_ID, "danger")
    assert "confirm" in approve and "confirm" not in reject
    assert parse_action_value(approve["value"]) == (42, COMMIT, PLAN_SHA)
    assert reject["value"] == approve["value"]
    assert message.blocks[-1]["type"] == "actions"
    assert "<@U0ONCALL> *Approval needed:* 1 of 2 so far" in shown(message)
    assert "*Reason:* on_merge: ask" in shown(message)


def test_an_approval_request_without_a_plan_hash_is_refused():
    with pytest.raises(ValueError, match="plan sha256"):
        render_run(make_run(plan_sha256=None), make_summary(), commit=None, awaiting_approval=True)


def test_a_successful_apply_pages_nobody():
    message = render_run(make_run(RunStatus.APPLIED), make_summary(), commit=None, mention=GROUP)

    assert "<!subteam" not in everything_sent(message)
    assert ":large_green_circle:" in message.blocks[0]["text"]["text"]


def test_replaces_and_deletes_are_listed_first_and_marked():
    summary = make_summary(
        *many("update", 1, prefix="aws_instance.u"),
        *many("create", 1, prefix="aws_instance.c"),
        *many("delete", 1, prefix="aws_instance.d"),
        *many("replace", 1, prefix="aws_instance.r"),
    )

    text = shown(render_run(make_run(), summary, commit=None))

    positions = [
        text.index(title) for title in ("Replace — destroy", "Destroy*", "Create*", "Update in place")
    ]
    assert positions == sorted(positions)
    assert ":warning: *Replace — destroy and re-create* (1)" in text
    assert "`-/+ aws_instance.r[0]`" in text and "`- aws_instance.d[0]`" in text
    assert "*1 to replace*" in text and "*1 to destroy*" in text


def test_a_long_list_of_deletes_does_not_hide_the_creates_after_it():
    summary = make_summary(*many("delete", 500), *many("create", 2, prefix="aws_instance.new"))

    message = render_run(make_run(), summary, commit=None)

    assert "… and 480 more" in shown(message)
    assert "aws_instance.new[1]" in shown(message)
    assert message.file is not None


def test_when_space_runs_out_every_group_still_shows_its_title_and_how_many_are_left():
    long = "module.a_very_long_module_name_for_testing." * 4
    groups = [
        many(action, 300, attributes=6, prefix=f"{long}{action}")
        for action in ("replace", "delete", "create", "update", "import", "move")
    ]
    drift = tuple(many("update", 300, attributes=6, prefix=f"{long}drifted"))
    run = make_run(RunStatus.PLANNED, RunKind.DRIFT)

    message = render_run(run, make_summary(*[c for g in groups for c in g], drift=drift), commit=None)

    assert slack_violations(message) == []
    text = shown(message)
    for title in (
        "Drift —",
        "Replace —",
        "Destroy*",
        "Create*",
        "Update in place*",
        "Import*",
        "Other actions*",
    ):
        assert f"{title}" in text
    assert len(re.findall(r"^… and \d+ more$", text, flags=re.MULTILINE)) == 7
    assert message.file is not None


def test_resource_names_and_values_cannot_mention_or_link():
    evil = 'null_resource.x["<!channel> <https://evil.example|click me> <@U0BOSS> &amp; @here"]'
    change = ResourceChange(
        address=evil,
        type="null_resource",
        action="update",
        attributes=(AttributeChange(path="note", before="<!here>", after="<mailto:a@b|x>"),),
    )
    run = make_run(RunStatus.PLANNED, RunKind.DRIFT, stack="web<!channel>")
    commit = CommitInfo(COMMIT, "Merge <!everyone>", "<@U0EVE>")

    message = render_run(run, make_summary(drift=(change,)), commit=commit, reason="<!channel>")

    sent = message.text + "\n" + shown(message)
    assert "<" not in sent and ">" not in sent
    assert "&lt;!channel&gt;" in sent and "&amp;amp;" in sent
    assert "@\u2060here" in sent


def test_a_queued_run_shows_stack_kind_status_and_trigger():
    run = make_run(RunStatus.QUEUED, trigger=Trigger(TriggerSource.WEBHOOK, actor="delivery-7"))

    message = render_run(run, None, commit=None)

    assert [block["type"] for block in message.blocks] == ["header", "context"]
    assert message.blocks[0]["text"]["text"] == ":hourglass_flowing_sand: network · deploy · queued"
    assert "Run #42 · triggered by webhook (delivery-7)" in shown(message)
    assert "Commit `0123456789`" in shown(message)
    assert message.text == "tfops: network deploy run #42 · queued"


def test_every_status_has_its_own_emoji():
    assert set(STATUS_EMOJI) == set(RunStatus)
    assert len(set(STATUS_EMOJI.values())) == len(RunStatus)


def test_the_file_name_is_safe_for_any_stack_name():
    run = make_run(stack="../../etc/passwd x")

    message = render_run(run, make_summary(*many("create", 200)), commit=None)

    assert message.file is not None
    assert re.fullmatch(r"tfops-run-42-[A-Za-z0-9_.-]+-plan\.txt", message.file[0])
    assert "/" not in message.file[0]


# --- mentions and action values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("S0PLATFORM", "<!subteam^S0PLATFORM>"),
        ("<!subteam^S0PLATFORM>", "<!subteam^S0PLATFORM>"),
        ("U0ONCALL", "<@U0ONCALL>"),
        ("<@W0ONCALL>", "<@W0ONCALL>"),
    ],
)
def test_a_mention_is_a_user_group_or_a_user(configured, expected):
    assert format_mention(configured) == expected


@pytest.mark.parametrize("configured", ["@platform", "<!channel>", "<!here>", "s0lower", "S0<x>", "", "U 1"])
def test_anything_else_is_refused_as_a_mention(configured):
    with pytest.raises(ValueError):
        format_mention(configured)


@pytest.mark.parametrize(
    "value",
    [
        f"tfops1:42:{COMMIT}:{PLAN_SHA}\n",
        f" tfops1:42:{COMMIT}:{PLAN_SHA}",
        f"tfops1:042:{COMMIT}:{PLAN_SHA}",
        f"tfops1:0:{COMMIT}:{PLAN_SHA}",
        f"tfops1:-1:{COMMIT}:{PLAN_SHA}",
        f"tfops1:٤٢:{COMMIT}:{PLAN_SHA}",
        f"tfops1:42:{COMMIT.upper()}:{PLAN_SHA}",
        f"tfops1:42:{COMMIT[:12]}:{PLAN_SHA}",
        f"tfops1:42:{COMMIT}:{PLAN_SHA[:-1]}",
        f"tfops1:42:{COMMIT}:{PLAN_SHA}:extra",
        f"tfops1:{2**63}:{COMMIT}:{PLAN_SHA}",
        f"tfops2:42:{COMMIT}:{PLAN_SHA}",
        "42",
        "",
    ],
)
def test_only_the_exact_action_value_form_is_accepted(value):
    with pytest.raises(ValueError):
        parse_action_value(value)


@pytest.mark.parametrize(
    ("run_id", "commit_sha", "plan_sha256"),
    [
        (0, COMMIT, PLAN_SHA),
        (True, COMMIT, PLAN_SHA),
        (1, "main", PLAN_SHA),
        (1, COMMIT, "sha256:" + PLAN_SHA),
    ],
)
def test_an_action_value_is_only_made_from_a_real_binding(run_id, commit_sha, plan_sha256):
    with pytest.raises(ValueError):
        action_value(run_id, commit_sha, plan_sha256)


hex_strings = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(
    run_id=st.integers(1, 2**63 - 1),
    commit_sha=hex_strings | hex_strings.map(lambda text: text[:40]),
    plan_sha256=hex_strings,
)
def test_action_values_round_trip(run_id, commit_sha, plan_sha256):
    value = action_value(run_id, commit_sha, plan_sha256)
    assert parse_action_value(value) == (run_id, commit_sha, plan_sha256)
    assert len(value) <= SLACK["button_value"]


@given(st.text())
def test_parsing_arbitrary_text_is_either_a_binding_or_a_value_error(text):
    try:
        run_id, commit_sha, plan_sha256 = parse_action_value(text)
    except ValueError:
        return
    assert action_value(run_id, commit_sha, plan_sha256) == text


# --- properties: limits, buttons, escaping, canaries, for any input ------------------------------------

NASTY = [
    "<!channel>",
    "<!here|here>",
    "<@U0BOSS>",
    "<https://evil.example|totally safe>",
    "&amp;",
    "&",
    "`",
    "```",
    "*bold*",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "@here",
    "@channel",
    "😀",
    "👩‍👩‍👧",
    "\u202e",
    "\u2028",
    "é",
    SENSITIVE,
    UNKNOWN,
    REDACTED,
]

fragments = st.text(max_size=30) | st.sampled_from(NASTY)
nasty_text = st.lists(fragments, max_size=8).map("".join)
long_text = st.tuples(fragments, st.integers(1, 400)).map(lambda pair: pair[0] * pair[1])
any_text = nasty_text | long_text

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=10,
)
attributes = st.builds(AttributeChange, path=any_text, before=values, after=values)
actions = st.sampled_from(["create", "update", "delete", "replace", "import"]) | nasty_text
templates = st.builds(
    ResourceChange,
    address=any_text,
    type=nasty_text,
    action=actions,
    attributes=st.lists(attributes, max_size=8).map(tuple),
    module_address=st.none() | nasty_text,
)


@st.composite
def resource_lists(draw: st.DrawFn, max_count: int = 2000) -> tuple[ResourceChange, ...]:
    """Up to max_count resources built from a few drawn templates: big plans without slow drawing."""
    count = draw(st.integers(0, max_count) | st.integers(0, 30))
    if count == 0:
        return ()
    shapes = draw(st.lists(templates, min_size=1, max_size=6))
    copies = (shapes[index % len(shapes)] for index in range(count))
    return tuple(
        dataclasses.replace(shape, address=f"{shape.address}[{index}]") for index, shape in enumerate(copies)
    )


summaries = st.builds(
    PlanSummary,
    terraform_version=st.just("1.0.3"),
    format_version=st.just("1.2"),
    changes=resource_lists(),
    drift=resource_lists(max_count=300),
    output_changes=st.lists(any_text, max_size=200).map(tuple),
    errored=st.booleans(),
)

decisions = st.builds(
    DecisionInfo,
    decision=st.sampled_from(["approved", "rejected"]),
    by_name=any_text,
    by_id=any_text,
    at=st.datetimes(timezones=st.none() | st.timezones()),
    source=st.sampled_from(["slack", "cli"]),
)


@st.composite
def runs(draw: st.DrawFn) -> Run:
    return Run(
        id=draw(st.integers(1, 2**63 - 1)),
        stack=draw(any_text),
        kind=draw(st.sampled_from(RunKind)),
        status=draw(st.sampled_from(RunStatus)),
        trigger=Trigger(
            source=draw(st.sampled_from(TriggerSource)),
            actor=draw(any_text),
            forced=draw(st.booleans()),
            note=CANARY,
        ),
        commit_sha=draw(hex_strings.map(lambda text: text[:40])),
        plan_sha256=draw(hex_strings),
        summary={"changes": [{"address": CANARY}]},
        log_path=f"/runs/{CANARY}.log",
        error=f"Error: {CANARY}",
        decided_by=CANARY,
    )


commits = st.none() | st.builds(
    CommitInfo, sha=hex_strings.map(lambda t: t[:40]), subject=any_text, author=any_text
)
mentions = st.sampled_from([None, "S0PLATFORM", "<!subteam^S0SRE>", "U0ONCALL", "<@W0LEAD>"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    run=runs(),
    summary=st.none() | summaries,
    commit=commits,
    decided=st.lists(decisions, max_size=15),
    awaiting=st.booleans(),
    required=st.integers(1, 5),
    mention=mentions,
    error_tail=st.none() | any_text,
    reason=st.none() | any_text,
)
def test_every_message_fits_slack_and_shows_nothing_it_should_not(
    run, summary, commit, decided, awaiting, required, mention, error_tail, reason
):
    message = render_run(
        run,
        summary,
        commit=commit,
        decisions=decided,
        awaiting_approval=awaiting,
        approvals_required=required,
        mention=mention,
        error_tail=error_tail,
        reason=reason,
    )

    assert slack_violations(message) == []
    assert bool(buttons(message)) == awaiting
    for button in buttons(message):
        assert parse_action_value(button["value"]) == (run.id, run.commit_sha, run.plan_sha256)
    assert CANARY not in everything_sent(message)
    # The configured mention is the only markup: nothing from the input can add another.
    for text in [message.text, *texts_of(message.blocks), *message.thread_notes]:
        assert "<" not in without_mentions(text, mention)
        assert ">" not in without_mentions(text, mention)
    if mention is not None:
        pages = awaiting or run.status in {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED}
        assert (format_mention(mention) in message.text) == pages
    if re.search(r"… and \d+ more(?! decisions)", shown(message)):
        assert message.file is not None
    if message.file is not None:
        assert "the whole plan is attached in the thread" in shown(message)


@given(text=any_text, limit=st.integers(1, 500))
def test_escaped_text_is_inert_and_within_its_limit(text, limit):
    escaped = escape_mrkdwn(text, limit)
    assert size(escaped) <= limit
    assert "<" not in escaped and ">" not in escaped
    assert re.search(r"&(?!amp;|lt;|gt;)", escaped) is None


def test_an_approval_request_mentions_who_is_asked():
    message = render_run(
        make_run(RunStatus.AWAITING_APPROVAL),
        make_summary(),
        commit=None,
        awaiting_approval=True,
        approvers=("U0ALICE", "S0PLATFORM"),
    )

    text = json.dumps(message.blocks)
    assert "*Approvers:* <@U0ALICE>, <!subteam^S0PLATFORM>" in text


def test_an_approval_request_without_approvers_points_to_the_cli():
    message = render_run(
        make_run(RunStatus.AWAITING_APPROVAL), make_summary(), commit=None, awaiting_approval=True
    )

    assert "tfops approve" in json.dumps(message.blocks)


def test_a_decided_run_names_no_approvers():
    message = render_run(make_run(RunStatus.APPLIED), make_summary(), commit=None, approvers=("U0ALICE",))

    assert "Approvers" not in json.dumps(message.blocks)
