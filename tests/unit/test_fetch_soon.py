"""Webhook hints become few, prompt fetches (`tfops.triggers.FetchSoon`)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tfops.errors import GitFetchError
from tfops.triggers import KEPT_HINTS, FetchHint, FetchSoon, HintBatch, describe_hints


def hint(n: int = 0, source: str = "github") -> FetchHint:
    return FetchHint(source=source, event="push", delivery_id=f"d{n}", sha=f"{n:040x}", ref="refs/heads/main")


class RecordingFetch:
    def __init__(self, *, hold: threading.Event | None = None) -> None:
        self.batches: list[HintBatch] = []
        self.started = threading.Event()
        self.hold = hold

    def __call__(self, hints: HintBatch) -> None:
        self.batches.append(hints)
        self.started.set()
        if self.hold is not None:
            self.hold.wait(5)


@pytest.fixture
def made():
    built = []

    def make(fetch, window=0.05):
        soon = FetchSoon(fetch, window=window)
        soon.start()
        built.append(soon)
        return soon

    yield make
    for soon in built:
        soon.stop()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_burst_of_hints_inside_the_window_is_one_fetch(made):
    fetch = RecordingFetch()
    soon = made(fetch, window=0.2)

    for n in range(20):
        soon.request_fetch(hint(n))
    wait_until(lambda: fetch.batches)
    time.sleep(0.3)

    assert len(fetch.batches) == 1 and fetch.batches[0].total == 20


def test_hints_during_a_fetch_cause_exactly_one_more_fetch_after_it(made):
    release = threading.Event()
    fetch = RecordingFetch(hold=release)
    soon = made(fetch)
    soon.request_fetch(hint(1))
    fetch.started.wait(5)

    for n in range(2, 7):
        soon.request_fetch(hint(n))  # the branch moved again while the first fetch ran
    release.set()
    wait_until(lambda: len(fetch.batches) == 2)
    time.sleep(0.2)

    assert [batch.total for batch in fetch.batches] == [1, 5]
    assert list(fetch.batches[1]) == [hint(n) for n in range(2, 7)]
    assert soon.fetches == 2


def test_request_fetch_returns_at_once_even_while_a_fetch_is_stuck(made):
    release = threading.Event()
    fetch = RecordingFetch(hold=release)
    soon = made(fetch)
    soon.request_fetch(hint(1))
    fetch.started.wait(5)

    started = time.monotonic()
    soon.request_fetch(hint(2))
    took = time.monotonic() - started
    release.set()

    assert took < 0.05


def test_a_failing_fetch_does_not_stop_later_ones(made):
    calls = []

    def flaky(hints):
        calls.append(len(hints))
        if len(calls) == 1:
            raise OSError("remote unreachable")

    soon = made(flaky)
    soon.request_fetch(hint(1))
    wait_until(lambda: calls)
    soon.request_fetch(hint(2))
    wait_until(lambda: len(calls) == 2)


def test_after_stop_hints_are_dropped_and_no_fetch_runs(made):
    fetch = RecordingFetch()
    soon = made(fetch, window=0.5)
    soon.request_fetch(hint(1))
    soon.stop()
    soon.request_fetch(hint(2))
    time.sleep(0.1)

    assert fetch.batches == []


def test_the_trigger_note_names_the_deliveries_and_says_what_they_claimed():
    note = describe_hints([hint(n) for n in range(7)])

    assert note.startswith("webhook: github push d0 says 0000000000")
    assert note.endswith("and 2 more")


def test_a_flood_of_hints_during_a_fetch_keeps_ten_and_counts_the_rest(made):
    release = threading.Event()
    fetch = RecordingFetch(hold=release)
    soon = made(fetch)
    soon.request_fetch(hint(0))
    fetch.started.wait(5)

    held = []
    for n in range(1, 10_001):
        soon.request_fetch(hint(n))
        if n % 1000 == 0:
            held.append(soon.held_hints)
    release.set()
    wait_until(lambda: len(fetch.batches) == 2)
    flood = fetch.batches[1]

    assert max(held) <= KEPT_HINTS
    assert flood.total == 10_000
    assert list(flood) == [hint(n) for n in (1, 2, 3, 4, 5, 9996, 9997, 9998, 9999, 10_000)]
    assert flood[-1] == hint(10_000)  # the newest delivery, which names the trigger's actor
    assert describe_hints(flood).endswith(", github push d5 says 0000000000 and 9995 more")


def test_the_trigger_note_counts_every_hint_of_a_batch_not_only_the_kept_ones():
    batch = HintBatch([hint(n) for n in range(5)], [hint(n) for n in range(95, 100)], total=100)

    assert describe_hints(batch).endswith("and 95 more")
    assert describe_hints(HintBatch([hint(1), hint(2)])) == (
        "webhook: github push d1 says 0000000000, github push d2 says 0000000000"
    )


@pytest.mark.parametrize(
    "event",
    ["[bold red]push[/]", "push\x1b[2J\r\nforged line", "push\u202eevil", "push\x00\x07"],
)
def test_the_trigger_note_carries_no_markup_or_control_characters(event):
    note = describe_hints([FetchHint("github", event, "d-1", None, None)])

    assert note.startswith("webhook: github ")
    assert note.isprintable()
    assert "[" not in note and "]" not in note


def test_a_huge_event_name_is_clipped_in_the_trigger_note():
    note = describe_hints([FetchHint("generic", "x" * 10_000, "key-1", None, None)])

    assert len(note) < 150
    assert note.endswith(" key-1")


def test_webhook_fetch_failures_are_a_warning_once_per_streak_and_recovery_is_said(made, caplog):
    outcomes = [GitFetchError("remote unreachable"), GitFetchError("remote unreachable"), None]
    calls = []

    def fetch(hints):
        calls.append(hints)
        outcome = outcomes[len(calls) - 1]
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.DEBUG, logger="tfops.triggers"):
        soon = made(fetch)
        for n in range(3):  # one hint per fetch: each waits for the previous fetch to be done
            soon.request_fetch(hint(n))
            wait_until(lambda n=n: len(calls) == n + 1)
        wait_until(lambda: any(record.levelno == logging.INFO for record in caplog.records))

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "remote unreachable" in warnings[0].getMessage()
    assert [record.getMessage() for record in caplog.records if record.levelno == logging.INFO] == [
        "webhook-triggered fetches work again"
    ]
