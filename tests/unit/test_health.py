"""Readiness as a pure decision, and /healthz + /readyz over real HTTP to uvicorn on a loopback port."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tfops.web.app import create_app
from tfops.web.health import ReadinessFacts, health_router, readiness
from tfops.web.server import HttpOptions, WebServer

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLL = 60.0
WINDOW = timedelta(seconds=3 * POLL)
UNREACHABLE = "fatal: unable to access 'https://git.example.com/infra.git/': Could not resolve host"


def facts(**changes: object) -> ReadinessFacts:
    """A healthy daemon 10 minutes after start that fetched 30 s ago; `changes` break it."""
    healthy = ReadinessFacts(
        store_ok=True,
        scheduler_running=True,
        last_fetch_ok_at=START + timedelta(minutes=9, seconds=30),
        last_fetch_error=None,
        poll_interval=POLL,
        started_at=START,
        now=START + timedelta(minutes=10),
    )
    return replace(healthy, **changes)


# --------------------------------------------------------------------------- the decision


def test_a_healthy_daemon_is_ready_with_every_check_passed() -> None:
    result = readiness(facts())

    assert result.ready
    assert result.reasons == ()
    assert dict(result.checks) == {"store": True, "scheduler": True, "fetch": True, "stacks": True}


def test_an_unreachable_store_alone_makes_the_daemon_not_ready() -> None:
    result = readiness(facts(store_ok=False))

    assert not result.ready
    assert dict(result.checks) == {"store": False, "scheduler": True, "fetch": True, "stacks": True}
    assert len(result.reasons) == 1
    assert "store" in result.reasons[0]


def test_a_stopped_scheduler_alone_makes_the_daemon_not_ready() -> None:
    result = readiness(facts(scheduler_running=False))

    assert not result.ready
    assert dict(result.checks) == {"store": True, "scheduler": False, "fetch": True, "stacks": True}
    assert len(result.reasons) == 1
    assert "scheduler" in result.reasons[0]


def test_a_stale_fetch_alone_makes_the_daemon_not_ready_and_says_how_stale() -> None:
    now = START + timedelta(hours=1)
    result = readiness(facts(last_fetch_ok_at=now - timedelta(minutes=5), now=now))

    assert not result.ready
    assert dict(result.checks) == {"store": True, "scheduler": True, "fetch": False, "stacks": True}
    assert result.reasons == ("the last successful git fetch was 5m ago, more than 3 poll intervals, 3m",)


def test_every_failed_check_gives_its_own_reason() -> None:
    now = START + timedelta(hours=1)
    result = readiness(
        facts(store_ok=False, scheduler_running=False, last_fetch_ok_at=START + timedelta(minutes=1), now=now)
    )

    assert not result.ready
    assert dict(result.checks) == {"store": False, "scheduler": False, "fetch": False, "stacks": True}
    assert len(result.reasons) == 3


def test_a_fetch_exactly_three_poll_intervals_old_still_counts() -> None:
    now = START + timedelta(hours=1)

    assert readiness(facts(last_fetch_ok_at=now - WINDOW, now=now)).ready
    late = readiness(facts(last_fetch_ok_at=now - WINDOW - timedelta(milliseconds=1), now=now))
    assert not late.ready
    assert late.checks["fetch"] is False


def test_before_the_first_fetch_the_daemon_is_ready_during_the_grace_period() -> None:
    during = facts(last_fetch_ok_at=None, last_fetch_error="could not resolve host", now=START + WINDOW)

    result = readiness(during)

    assert result.ready
    assert result.reasons == ()


def test_after_the_grace_period_without_a_fetch_the_reason_says_the_last_fetch_failed() -> None:
    after = facts(
        last_fetch_ok_at=None,
        last_fetch_error=UNREACHABLE,
        now=START + WINDOW + timedelta(seconds=1),
    )

    result = readiness(after)

    assert not result.ready
    assert result.checks["fetch"] is False
    assert result.reasons == (
        "no successful git fetch since the start 3m1s ago (allowed: 3 poll intervals, 3m); "
        "the last fetch failed — see the daemon's log",
    )


def test_a_stale_fetch_says_the_last_fetch_failed_but_never_quotes_git() -> None:
    # git's error names the remote URL and local paths: /readyz is open to anyone on the listener.
    now = START + timedelta(hours=1)
    error = f"{UNREACHABLE}\nfatal: '/var/lib/tfops/repo/.git' does not appear to be a git repository"
    result = readiness(facts(last_fetch_ok_at=START + timedelta(minutes=1), last_fetch_error=error, now=now))

    (reason,) = result.reasons
    assert reason.endswith("; the last fetch failed — see the daemon's log")
    assert "git.example.com" not in reason
    assert "/var/lib/tfops" not in reason
    assert "fatal" not in reason


def test_a_success_from_before_this_start_does_not_end_the_grace_period() -> None:
    # The daemon restarted; the store remembers yesterday's fetch, this process has not fetched yet.
    restarted = facts(last_fetch_ok_at=START - timedelta(days=1), now=START + timedelta(seconds=30))

    assert readiness(restarted).ready
    assert not readiness(replace(restarted, now=START + WINDOW + timedelta(seconds=1))).ready


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        facts(now=datetime(2024, 5, 1, 12, 10))


# --------------------------------------------------------------------------- the routes


@dataclass
class FactsSource:
    """What the daemon would answer; `broken` makes gathering the facts raise."""

    current: ReadinessFacts
    broken: bool = False
    calls: int = 0

    def __call__(self) -> ReadinessFacts:
        self.calls += 1
        if self.broken:
            raise RuntimeError("database is locked")
        return self.current


@dataclass
class Served:
    source: FactsSource
    client: httpx.Client


@pytest.fixture(scope="module")
def served_module() -> Iterator[Served]:
    source = FactsSource(facts())
    server = WebServer(create_app([health_router(source)]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Served(source, client)
    assert server.stop(timeout=5.0)


@pytest.fixture
def served(served_module: Served) -> Served:
    served_module.source.current = facts()
    served_module.source.broken = False
    served_module.source.calls = 0
    return served_module


def test_healthz_answers_ok_without_gathering_any_facts(served: Served) -> None:
    served.source.broken = True

    response = served.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert served.source.calls == 0


def test_readyz_answers_200_with_the_checks_when_ready(served: Served) -> None:
    response = served.client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"store": True, "scheduler": True, "fetch": True, "stacks": True},
    }
    assert response.headers["cache-control"] == "no-store"


def test_readyz_answers_503_with_the_reasons_when_not_ready(served: Served) -> None:
    served.source.current = facts(store_ok=False)

    response = served.client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"] == {"store": False, "scheduler": True, "fetch": True, "stacks": True}
    assert body["reasons"] == ["the store (database) is not reachable"]


def test_readyz_tells_an_unauthenticated_caller_that_fetching_fails_but_not_the_error(served: Served) -> None:
    now = START + timedelta(hours=1)
    served.source.current = facts(last_fetch_ok_at=START, last_fetch_error=UNREACHABLE, now=now)

    response = served.client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["reasons"] == [
        "the last successful git fetch was 1h ago, more than 3 poll intervals, 3m; "
        "the last fetch failed — see the daemon's log"
    ]
    assert "git.example.com" not in response.text


def test_readyz_follows_the_daemon_back_to_ready(served: Served) -> None:
    served.source.current = facts(scheduler_running=False)
    assert served.client.get("/readyz").status_code == 503

    served.source.current = facts()

    assert served.client.get("/readyz").status_code == 200


def test_readyz_answers_503_and_logs_once_when_the_facts_cannot_be_gathered(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.source.broken = True

    with caplog.at_level(logging.DEBUG, logger="tfops.web.health"):
        first = served.client.get("/readyz")
        second = served.client.get("/readyz")
        served.source.broken = False
        recovered = served.client.get("/readyz")

    assert first.status_code == second.status_code == 503
    assert first.json() == {"status": "not ready", "checks": {}, "reasons": ["readiness check failed"]}
    assert "database is locked" not in first.text
    assert recovered.status_code == 200
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_a_refused_stack_leaves_the_daemon_ready_but_degraded_and_names_the_stack(served: Served) -> None:
    refused = "stack 'evil' (stacks/evil) is refused: the folder is a symlink that resolves outside the repo"
    served.source.current = facts(refused_stacks=(refused,))

    response = served.client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"store": True, "scheduler": True, "fetch": True, "stacks": False},
        "warnings": [refused],
    }


def test_readyz_is_gathered_at_each_request(served: Served) -> None:
    served.client.get("/readyz")
    served.client.get("/readyz")

    assert served.source.calls == 2
