"""Supervising a started command's process group: timeout and cancel, SIGINT then SIGKILL, reaping.

The command runs in its own process group, so one signal reaches Terraform and the providers it
started, and nothing of the group outlives its leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from tfops.proc.result import Cancel, Outcome, describe_exit

# How often the supervisor looks at the child, the clock and the cancel signal: first
# after 1 ms, then less and less often up to every 50 ms. Git reads (rev-parse, log)
# take milliseconds and run often; a fixed 50 ms would be most of their cost.
_FIRST_POLL_INTERVAL = 0.001
_POLL_INTERVAL = 0.05


def restore_sigint() -> None:
    """Let children be stopped with SIGINT even when tfops was started with SIGINT ignored.

    A non-interactive shell starts background jobs (`tfops serve &` in a script) with SIGINT
    ignored, and an ignored signal stays ignored across exec: every Git, shell or provider child
    would then shrug off the gentle stop and wait for SIGKILL. A handler, unlike SIG_IGN, is reset
    to the default at exec, so Python's own is installed. Call it from the main thread.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class Ending:
    interrupted: Outcome | None  # TIMED_OUT or CANCELLED, whichever came first
    killed_after_grace: bool


def wait_for_end(
    proc: subprocess.Popen[bytes],
    on_start: Callable[[int], None] | None,
    deadline: float | None,
    cancel: Cancel | None,
    grace: float,
) -> Ending:
    """Supervise the child until it is gone and reaped, whatever happens in here."""
    try:
        if on_start is not None:
            on_start(proc.pid)
        ending = _supervise(proc.pid, deadline, cancel, grace)
    except BaseException:
        # on_start raised or this thread was interrupted: never leave the command
        # running unsupervised.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    _sweep_group(proc.pid)
    proc.wait()
    return ending


def _supervise(pid: int, deadline: float | None, cancel: Cancel | None, grace: float) -> Ending:
    interrupted: Outcome | None = None
    kill_at: float | None = None
    killed = False
    step = _FIRST_POLL_INTERVAL
    while not _leader_exited(pid):
        now = time.monotonic()
        if interrupted is None:
            interrupted = _interruption(now, deadline, cancel)
            if interrupted is not None:
                # Exactly one SIGINT: a second one makes Terraform abandon its
                # graceful stop and risk an unwritten state.
                _signal_group(pid, signal.SIGINT)
                kill_at = now + grace
        elif kill_at is not None and now >= kill_at:
            _signal_group(pid, signal.SIGKILL)
            kill_at, killed = None, True
        if interrupted is None:
            _pause(cancel, step, wake_at=deadline, now=now)
        else:
            _pause(None, step, wake_at=kill_at, now=now)
        step = min(step * 2, _POLL_INTERVAL)
    return Ending(interrupted, killed)


def _interruption(now: float, deadline: float | None, cancel: Cancel | None) -> Outcome | None:
    if cancel is not None and cancel.is_cancelled:
        return Outcome.CANCELLED
    if deadline is not None and now >= deadline:
        return Outcome.TIMED_OUT
    return None


def _pause(cancel: Cancel | None, interval: float, *, wake_at: float | None, now: float) -> None:
    step = interval if wake_at is None else min(interval, max(wake_at - now, 0.001))
    if cancel is not None:
        cancel.wait(step)  # wakes at once when cancelled
    else:
        time.sleep(step)


def _leader_exited(pid: int) -> bool:
    # WNOWAIT leaves the exited leader as a zombie: its pid, and so its process
    # group id, cannot be reused until we reap it, which makes the killpg calls
    # below safe from hitting an unrelated process group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _sweep_group(pgid: int) -> None:
    # The leader has exited (any outcome): nothing of its group may outlive it. We
    # SIGKILL at once rather than giving stragglers a moment: Terraform waits for its
    # own providers before it exits, so whatever is left is a stray (a backgrounded
    # hook, a hung plugin) that would otherwise hold locks, pipes or cloud sessions.
    # With no member left the group no longer exists and killpg says so.
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def footer(ending: Ending, exit_code: int, duration: float, timeout: float | None, grace: float) -> str:
    ended = f"{describe_exit(exit_code)} after {duration:.1f}s"
    if ending.interrupted is None:
        return f"[{ended}]"
    reason = f"timed out (limit {timeout:g}s)" if ending.interrupted is Outcome.TIMED_OUT else "cancelled"
    killed = f", SIGKILL after {grace:g}s grace" if ending.killed_after_grace else ""
    return f"[{reason}: sent SIGINT to the process group{killed}; {ended}]"
