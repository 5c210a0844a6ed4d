"""Terraform left running by a tfops process that died (kill -9, OOM, power of the VM).

Terraform runs in its own process group (see tfops.proc), so when tfops dies it runs on:
an apply goes on changing infrastructure nobody watches, holding the state lock. Each
running Terraform's group is written down in its run (:class:`GroupRecord`); the next
start ends what is left of it exactly as a graceful stop would (one SIGINT, the grace,
then SIGKILL) before marking the run interrupted.

A process group id is a pid, and pids are reused. A group is only signalled when it is
provably ours: its leader is alive with the start time (and boot) recorded, or, once the
leader is gone, every member was started after it, in its session, and carries the
stack's ``TF_DATA_DIR`` in its environment (Terraform passes it to providers and to
local-exec commands). Anything else is left alone and said so.

Linux only (/proc), like the rest of tfops' process handling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys/kernel/random/boot_id"
# After SIGKILL the kernel needs a moment to tear the processes down.
_KILL_SETTLE = 5.0
_POLL = 0.1


@dataclass(frozen=True)
class GroupRecord:
    """A running command's process group as stored with its run."""

    pgid: int
    leader: str  # "<boot id>:<leader's start time in clock ticks>": unlike a pid, never reused


@dataclass(frozen=True)
class Orphan:
    """A group recorded by a run that a previous tfops process left behind."""

    record: GroupRecord
    marker: str  # an environment entry every member of ours carries, e.g. "TF_DATA_DIR=/..."


class Ending(StrEnum):
    GONE = "gone"  # nothing of the group was left
    NOT_OURS = "not_ours"  # the id belongs to other processes now: left alone
    STOPPED = "stopped"  # ended within the grace after SIGINT
    KILLED = "killed"  # still there after the grace: SIGKILL


def record_of(pid: int) -> GroupRecord | None:
    """The record of the group `pid` leads (a proc.run child leads its own), or None off Linux."""
    started = _start_ticks(pid)
    boot = _boot_id()
    if started is None or boot is None:
        return None
    return GroupRecord(pgid=pid, leader=f"{boot}:{started}")


def end_orphans(orphans: list[Orphan], grace: float) -> list[Ending]:
    """End the orphans that are provably ours, all at once: SIGINT, `grace` seconds, SIGKILL."""
    endings: list[Ending | None] = [_classify(orphan) for orphan in orphans]
    alive = [orphan.record.pgid for orphan, ending in zip(orphans, endings, strict=True) if ending is None]
    for pgid in alive:
        _signal(pgid, signal.SIGINT)
    left = _wait_gone(alive, grace)
    for pgid in left:
        _signal(pgid, signal.SIGKILL)
    _wait_gone(left, _KILL_SETTLE)
    return [
        ending or (Ending.KILLED if orphan.record.pgid in left else Ending.STOPPED)
        for orphan, ending in zip(orphans, endings, strict=True)
    ]


def describe(pgid: int, ending: Ending, grace: float) -> str:
    """A sentence for the run's events."""
    if ending is Ending.GONE:
        return f"its Terraform (process group {pgid}) had already ended"
    if ending is Ending.NOT_OURS:
        return f"process group {pgid} now belongs to other programs and was left alone"
    if ending is Ending.STOPPED:
        return f"its Terraform was still running (process group {pgid}) and was ended with SIGINT"
    return (
        f"its Terraform was still running (process group {pgid}) and was ended: "
        f"SIGINT, then SIGKILL after {grace:g}s"
    )


# -- /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stat:
    pid: int
    pgrp: int
    session: int
    started: int


def _classify(orphan: Orphan) -> Ending | None:
    """GONE or NOT_OURS, or None: ours and alive."""
    pgid = orphan.record.pgid
    members = [stat for stat in _all_stats() if stat.pgrp == pgid]
    if not members:
        return Ending.GONE
    boot, _, started_text = orphan.record.leader.partition(":")
    if boot != _boot_id() or not started_text.isdigit():
        return Ending.NOT_OURS  # the machine restarted since: nothing of ours survived that
    started = int(started_text)
    leader = next((stat for stat in members if stat.pid == pgid), None)
    if leader is not None:
        return None if leader.started == started else Ending.NOT_OURS
    ours = all(
        stat.session == pgid and stat.started >= started and _has_env(stat.pid, orphan.marker)
        for stat in members
    )
    return None if ours else Ending.NOT_OURS


def _wait_gone(pgids: list[int], seconds: float) -> list[int]:
    """Wait until the groups have no live member, up to `seconds`; return those still there."""
    deadline = time.monotonic() + seconds
    left = list(pgids)
    while left:
        live = {stat.pgrp for stat in _all_stats()}
        left = [pgid for pgid in left if pgid in live]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(_POLL)
    return left


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _all_stats() -> list[_Stat]:
    stats = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats.append(stat)
    return stats


def _stat(pid: int) -> _Stat | None:
    """/proc/<pid>/stat of a live (not zombie) process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    # fields[0] is field 3 of proc(5): state; pgrp is 5, session 6, starttime 22.
    return _Stat(pid=pid, pgrp=int(fields[2]), session=int(fields[3]), started=int(fields[19]))


def _start_ticks(pid: int) -> int | None:
    stat = _stat(pid)
    return stat.started if stat is not None else None


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _has_env(pid: int, entry: str) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False  # another user's process, or gone: not provably ours
    return entry.encode() in environ.split(b"\0")
