"""The scheduler's jobs never lose an error: what a poll raises reaches the log, once per streak."""

from __future__ import annotations

import logging
import threading
import time

from tfops.errors import ConfigError
from tfops.scheduler import Scheduler, StackRegistry
from tfops.stacks import Discovery


class ScriptedPoller:
    """Stands in for RepoPoller: `poll()` raises `failure` while it is set."""

    def __init__(self, failure: Exception | None) -> None:
        self.failure = failure
        self.polls = 0
        self.polled = threading.Condition()

    def poll(self, *args, **kwargs):
        with self.polled:
            self.polls += 1
            self.polled.notify_all()
        if self.failure is not None:
            raise self.failure
        return []

    def wait_for_polls(self, count: int, timeout: float = 10.0) -> None:
        with self.polled:
            assert self.polled.wait_for(lambda: self.polls >= count, timeout), f"fewer than {count} polls"


def scheduler_for(poller, tmp_path) -> Scheduler:
    registry = StackRegistry(discover=lambda root: Discovery(), root=tmp_path)
    return Scheduler(
        poller=poller,
        queue=None,
        registry=registry,
        store=None,
        poll_interval=0.05,  # type: ignore[arg-type]
    )


def wait_for_record(caplog, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [record for record in caplog.records if predicate(record)]
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("no such log record")


def test_an_error_raised_in_the_poll_job_is_logged_at_error_once_per_streak(tmp_path, caplog):
    poller = ScriptedPoller(ConfigError("stack 'evil' is broken"))
    scheduler = scheduler_for(poller, tmp_path)
    with caplog.at_level(logging.DEBUG, logger="tfops.scheduler"):
        scheduler.start()
        try:
            poller.wait_for_polls(3)
            poller.failure = None
            wait_for_record(caplog, lambda record: record.levelno == logging.INFO)
        finally:
            scheduler.stop()

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert "stack 'evil' is broken" in errors[0].getMessage()
    assert any(record.getMessage() == "the poll works again" for record in caplog.records)


def test_an_unexpected_exception_in_the_poll_job_is_logged_with_its_traceback(tmp_path, caplog):
    poller = ScriptedPoller(KeyError("head"))
    scheduler = scheduler_for(poller, tmp_path)
    with caplog.at_level(logging.ERROR):
        scheduler.start()
        try:
            [error] = wait_for_record(caplog, lambda record: record.name == "tfops.scheduler")
        finally:
            scheduler.stop()

    assert error.exc_info is not None and error.exc_info[0] is KeyError
