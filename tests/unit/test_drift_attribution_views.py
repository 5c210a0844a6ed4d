"""Who caused a drift, as the store keeps it and as people read it: the summary's JSON round
trip, `tfops show`'s text, the Slack drift message, and the stack's last-in-sync moment."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from tfops.attribution import ResourceAttribution, TrailEvent, changed_what, render_line
from tfops.models import PlanSummary, Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify.blocks import render_run
from tfops.terraform.plan import render_text, summarize, summary_from_dict, summary_to_dict

PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
ALICE = "arn:aws:iam::111111111111:user/alice"
AT = datetime(2026, 11, 27, 10, 42, tzinfo=UTC)


def alice_event(**changes) -> TrailEvent:
    event = TrailEvent(
        event_id="e-1",
        event_name="PutObject",
        time=AT,
        principal_arn=ALICE,
        session_name=None,
        role_arn=None,
        source_ip="203.0.113.7",
        user_agent="console.amazonaws.com",
        agent="console",
        by_tfops=False,
    )
    return dataclasses.replace(event, **changes)


def drift_summary_with_attribution() -> PlanSummary:
    """The drift fixture's drifted resource, attributed to alice, and a second one CloudTrail
    would not answer for."""
    summary = summarize(json.loads((PLANS / "drift.json").read_text()))
    (first,) = summary.drift
    second = dataclasses.replace(first, address="demo_object.other")
    found = (
        ResourceAttribution(first.address, events=(alice_event(),), identifier="hello"),
        ResourceAttribution(second.address, unavailable="ThrottlingException: slow down"),
    )
    return dataclasses.replace(summary, changes=(), drift=(first, second), attribution=found)


def test_an_attribution_survives_the_store_and_a_summary_without_one_stays_as_it_was():
    summary = drift_summary_with_attribution()

    stored = json.loads(json.dumps(summary_to_dict(summary)))

    assert summary_from_dict(stored) == summary
    assert stored["attribution"][0]["events"][0]["principal_arn"] == ALICE
    plain = dataclasses.replace(summary, attribution=None)
    assert "attribution" not in summary_to_dict(plain), "stores that never asked CloudTrail keep their shape"
    assert summary_from_dict(summary_to_dict(plain)).attribution is None


def test_show_lists_who_changed_each_drifted_resource_after_the_drift():
    summary = drift_summary_with_attribution()
    first = summary.drift[0]

    text = render_text(summary)

    who = text[text.index("Who changed it (CloudTrail):") :]
    assert text.index("Drift (changed outside Terraform)") < text.index("Who changed it")
    expected = render_line(summary.attribution[0], [a.path for a in first.attributes])
    assert expected in who and "(PutObject, console, 2026-11-27 10:42 UTC)" in expected
    assert "`demo_object.other`: attribution unavailable: ThrottlingException: slow down" in who


def test_the_line_names_the_attributes_changed_and_marks_tfops_own_sessions():
    found = ResourceAttribution("aws_security_group.web", events=(alice_event(),))
    assert render_line(found, ["ingress[0].cidr", "ingress[1].cidr", "tags.Team"]) == (
        f"`aws_security_group.web`: ingress, tags changed by {ALICE} "
        "(PutObject, console, 2026-11-27 10:42 UTC)"
    )
    ours = ResourceAttribution("x.y", events=(alice_event(principal_arn="arn:…/tfops-app-7", by_tfops=True),))
    assert "arn:…/tfops-app-7 (tfops)" in render_line(ours)
    assert changed_what(["a", "b", "c", "d", "e"]) == "a, b, c and 2 more"


def test_the_slack_drift_message_names_who_changed_each_resource_inertly():
    summary = drift_summary_with_attribution()
    sneaky = dataclasses.replace(alice_event(), principal_arn="arn:aws:iam::1:user/<!channel>")
    summary = dataclasses.replace(
        summary,
        attribution=(dataclasses.replace(summary.attribution[0], events=(sneaky,)), *summary.attribution[1:]),
    )
    run = _drift_run()

    message = render_run(run, summary, commit=None, reason="on_drift: notify")

    text = json.dumps(message.blocks)
    assert ":bust_in_silhouette:" in text and "PutObject" in text
    assert "<!channel>" not in text, "a principal name cannot ping a channel"


def _drift_run():
    return Run(
        id=7,
        stack="app",
        kind=RunKind.DRIFT,
        status=RunStatus.PLANNED,
        trigger=Trigger(TriggerSource.DRIFT_TIMER),
        commit_sha="a" * 40,
    )
