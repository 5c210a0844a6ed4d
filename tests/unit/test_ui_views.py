"""The status page's pure parts: view models from store records, the SVG charts, the commit cache."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tfops.models import DriftState, Run, RunKind, RunStatus, Stack, StackState, Trigger, TriggerSource
from tfops.store.ui_queries import TroubleDay
from tfops.terraform.plan import summarize, summary_to_dict
from tfops.web import ui_views as views
from tfops.web.ui_charts import run_bars, trouble_chart
from tfops.web.ui_commits import CommitLookup

PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def a_run(run_id: int, status: RunStatus, *, seconds: float = 30.0) -> Run:
    start = NOW - timedelta(minutes=run_id)
    return Run(
        id=run_id,
        stack="s",
        kind=RunKind.DEPLOY,
        status=status,
        trigger=Trigger(source=TriggerSource.POLL),
        created_at=start,
        started_at=start,
        finished_at=start + timedelta(seconds=seconds),
    )


def rows(*specs: tuple[str, DriftState, RunStatus | None]) -> list[views.StackRow]:
    states = [
        (StackState(name, f"stacks/{name}", drift=drift), a_run(index + 1, status) if status else None)
        for index, (name, drift, status) in enumerate(specs)
    ]
    return views.stack_rows(states, {}, {}, lambda name: None)


def test_counts_cover_every_stack_while_filters_and_search_pick_rows() -> None:
    found = rows(
        ("api", DriftState.DRIFTED, RunStatus.APPLIED),
        ("web", DriftState.IN_SYNC, RunStatus.FAILED),
        ("jobs", DriftState.IN_SYNC, RunStatus.AWAITING_APPROVAL),
        ("db", DriftState.UNKNOWN, None),
    )

    everything = views.overview(found, state=None, query="", page=1)
    failed = views.overview(found, state="failed", query="", page=1)
    searched = views.overview(found, state=None, query=" STACKS/J ", page=1)
    bogus = views.overview(found, state="<script>", query="", page=7)

    assert everything.counts == {
        "total": 4, "in_sync": 2, "drifted": 1, "failed": 1, "awaiting_approval": 1,
    }  # fmt: skip
    assert [row.name for row in failed.rows] == ["web"]
    assert [row.name for row in searched.rows] == ["jobs"]
    assert bogus.state is None and bogus.page == 1 and len(bogus.rows) == 4


def test_a_configured_stack_not_recorded_yet_is_listed_as_unknown() -> None:
    recorded = [(StackState("b", "stacks/b", drift=DriftState.IN_SYNC), None)]
    configured = {"a": Stack(name="a", path="stacks/a"), "b": Stack(name="b", path="stacks/b")}

    found = views.stack_rows(recorded, configured, {}, lambda name: None)

    assert [(row.name, row.drift, row.configured) for row in found] == [
        ("a", "unknown", True),
        ("b", "in_sync", True),
    ]


def test_the_overview_is_paged() -> None:
    many = rows(*((f"s{i:04d}", DriftState.IN_SYNC, None) for i in range(views.PER_PAGE + 5)))

    second = views.overview(many, state=None, query="", page=2)

    assert second.pages == 2 and [row.name for row in second.rows] == [f"s{i:04d}" for i in range(100, 105)]


def test_the_plan_is_grouped_by_action_with_replaces_and_deletes_first() -> None:
    summary = summary_to_dict(summarize(json.loads((PLANS / "replace.json").read_text())))
    created = summary_to_dict(summarize(json.loads((PLANS / "create.json").read_text())))
    summary["changes"] = created["changes"] + summary["changes"]

    plan = views.plan_view(summary)

    assert plan is not None
    assert [action for action, _ in plan.groups] == ["replace", "create"]
    assert views.plan_view(None) is None


def test_drifted_attributes_show_before_and_after_and_long_values_are_cut() -> None:
    summary = summary_to_dict(summarize(json.loads((PLANS / "drift.json").read_text())))

    plan = views.plan_view(summary)

    assert plan is not None
    attributes = {attr.path: (attr.before, attr.after) for attr in plan.drift[0].attributes}
    assert attributes["content"] == ("hello", "edited by hand")
    assert views.show_value({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    cut = views.show_value("x" * 1000)
    assert len(cut) == views.VALUE_CHARS and cut.endswith("…")


def test_the_log_names_the_program_without_its_folder() -> None:
    log = "$ /opt/tf/bin/terraform plan -out=x\nError: /etc/hosts is unreadable\n$ terraform show"

    assert views.hide_program_paths(log) == (
        "$ terraform plan -out=x\nError: /etc/hosts is unreadable\n$ terraform show"
    )


def test_times_read_as_people_say_them() -> None:
    assert views.ago(NOW - timedelta(seconds=90), NOW) == "1m ago"
    assert views.ago(NOW + timedelta(hours=3), NOW) == "in 3h00m"
    assert views.ago(None, NOW) == "—"
    assert views.duration(NOW, NOW + timedelta(days=3)) == "3d"


def test_the_trouble_chart_draws_two_bars_a_day_scaled_to_a_round_top() -> None:
    days = [TroubleDay(date(2026, 11, 27), 3, 1), TroubleDay(date(2026, 11, 28), 0, 7)]

    svg = str(trouble_chart(days))

    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="bar drifted"') == 2 and svg.count('class="bar failed"') == 2
    assert ">10</text>" in svg  # 7 rounds up to 10
    assert "2026-11-28: 7 stack(s) with a failed run" in svg
    assert "<script" not in svg and "style=" not in svg


def test_run_durations_are_bars_red_for_failures_and_skip_unfinished_runs() -> None:
    unfinished = a_run(3, RunStatus.PLANNING)
    unfinished.finished_at = None

    done = [a_run(1, RunStatus.APPLIED, seconds=12), a_run(2, RunStatus.FAILED, seconds=40)]
    bars = run_bars([*done, unfinished])

    assert [(bar.label, bar.value, bar.css) for bar in bars] == [("#1", 12.0, "ok"), ("#2", 40.0, "failed")]


class CountingSource:
    def __init__(self) -> None:
        self.calls = 0

    def revision(self, rev: str) -> object:
        self.calls += 1
        if rev == "gone":
            raise ValueError("unknown commit")
        return type("Revision", (), {"sha": rev, "subject": "s", "author": "a"})()

    def commits_between(self, older: str, newer: str, path: str | None = None) -> int:
        self.calls += 1
        return 2


def test_commit_lookups_are_remembered_and_a_failed_one_is_asked_again() -> None:
    source = CountingSource()
    lookup = CommitLookup(source)

    first = lookup.commit("a" * 40)
    again = lookup.commit("a" * 40)
    behind = [lookup.behind("a", "b", "stacks/x") for _ in range(3)]
    gone = [lookup.commit("gone") for _ in range(2)]

    assert first is not None and first == again and first.short == "a" * 8
    assert behind == [2, 2, 2] and lookup.behind("a", "a", "p") == 0
    assert gone == [None, None]
    assert source.calls == 1 + 1 + 2
    assert CommitLookup(None).commit("a") is None
