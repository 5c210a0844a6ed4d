"""Ending Terraform left behind by a crashed tfops: only groups that are provably ours.

Real processes in their own sessions stand in for the orphaned Terraform; a pid is
reused in life, so the records are bent here to look like a reused id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfops import orphans

MARKER = "TF_DATA_DIR=/srv/tfops/stacks/app/tfdata"


@pytest.fixture
def groups():
    """Start process groups (own session, like proc.run's children); kill leftovers at the end."""
    started: list[subprocess.Popen] = []

    def start(script: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        child = subprocess.Popen(
            ["/bin/sh", "-c", script],
            env={"PATH": os.environ["PATH"], **(env or {})},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        started.append(child)
        return child

    yield start
    for child in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _members(pgid: int) -> list[int]:
    return [stat.pid for stat in orphans._all_stats() if stat.pgrp == pgid]


def _wait(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _trapping(groups, tmp_path: Path, trap: str) -> subprocess.Popen:
    """A shell that has set its SIGINT trap (a signal before that would meet sh's default)."""
    ready = tmp_path / "trap-set"
    child = groups(f"trap {trap} INT; : > '{ready}'; while :; do sleep 0.1; done")
    assert _wait(ready.exists), "the shell never set its trap"
    return child


def test_a_recorded_group_whose_leader_still_runs_is_stopped_with_sigint(groups, tmp_path):
    child = _trapping(groups, tmp_path, "'exit 0'")
    record = orphans.record_of(child.pid)
    assert record is not None and record.pgid == child.pid

    [ending] = orphans.end_orphans([orphans.Orphan(record, MARKER)], grace=10)

    assert ending is orphans.Ending.STOPPED
    assert child.wait(timeout=10) == 0, "the group was asked to stop (SIGINT), not killed"


def test_a_group_that_ignores_sigint_is_killed_after_the_grace(groups, tmp_path):
    child = _trapping(groups, tmp_path, "''")
    record = orphans.record_of(child.pid)
    assert record is not None

    [ending] = orphans.end_orphans([orphans.Orphan(record, MARKER)], grace=0.5)

    assert ending is orphans.Ending.KILLED
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert "SIGKILL after 0.5s" in orphans.describe(record.pgid, ending, 0.5)


def test_a_reused_process_group_id_is_left_alone(groups):
    child = groups("sleep 60")
    assert _wait(lambda: orphans._stat(child.pid) is not None)
    real = orphans.record_of(child.pid)
    assert real is not None
    boot, started = real.leader.split(":")
    # The same pid, but a leader started at another time: someone else's process now.
    reused = orphans.GroupRecord(child.pid, f"{boot}:{int(started) - 1}")

    [ending] = orphans.end_orphans([orphans.Orphan(reused, MARKER)], grace=0.5)

    assert ending is orphans.Ending.NOT_OURS
    assert child.poll() is None, "a process that is not ours was signalled"


def test_without_its_leader_a_group_is_ours_only_if_every_member_carries_the_stacks_marker(groups):
    ours = groups("sleep 60 & sleep 1", env={"TF_DATA_DIR": MARKER.split("=", 1)[1]})
    theirs = groups("sleep 60 & sleep 1", env={"TF_DATA_DIR": "/elsewhere"})
    records = [orphans.record_of(child.pid) for child in (ours, theirs)]
    assert None not in records
    for child, record in zip((ours, theirs), records, strict=True):
        child.wait(timeout=10)  # the leader is gone; its sleep lives on in the group
        assert _wait(lambda pgid=record.pgid: bool(_members(pgid)))

    endings = orphans.end_orphans([orphans.Orphan(record, MARKER) for record in records], grace=0.5)

    # (A background job of sh ignores SIGINT, so ours may need the SIGKILL.)
    assert endings[0] in (orphans.Ending.STOPPED, orphans.Ending.KILLED)
    assert endings[1] is orphans.Ending.NOT_OURS
    assert _wait(lambda: not _members(records[0].pgid))
    assert _members(records[1].pgid), "the group without our marker was signalled"


def test_a_group_with_nothing_left_is_reported_gone(groups):
    child = groups("exit 0")
    record = orphans.GroupRecord(child.pid, "boot:1")
    child.wait(timeout=10)

    assert orphans.end_orphans([orphans.Orphan(record, MARKER)], grace=1) == [orphans.Ending.GONE]


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_a_record_names_the_boot_and_the_leaders_start(groups):
    child = groups("sleep 60")
    record = orphans.record_of(child.pid)
    assert record is not None
    boot, started = record.leader.split(":")
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert started.isdigit()
