"""How a command ended (:class:`ProcResult`, :class:`Outcome`) and how to stop one (:class:`Cancel`)."""

from __future__ import annotations

import shlex
import signal
import threading
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class Cancel:
    """A cancellation signal shared between the scheduler and running processes (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Block until cancelled or ``timeout`` seconds passed; True if cancelled."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class ProcResult:
    """How one command ended. ``argv`` is as shown in the log: already redacted."""

    argv: tuple[str, ...]
    cwd: str
    outcome: Outcome
    exit_code: int | None  # None: never started; negative: killed by that signal
    duration: float
    tail: str = ""  # last lines written to the log (stdout+stderr interleaved), redacted
    stdout: str = ""  # only filled when capture_stdout=True; NOT redacted

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    def describe(self) -> str:
        """One line saying what ran and how it ended, then the output tail: for error messages."""
        headline = f"command `{shlex.join(self.argv)}` in {self.cwd} {self._ending()}"
        return f"{headline}\n{self.tail}" if self.tail else headline

    def _ending(self) -> str:
        after = f"after {self.duration:.1f}s"
        if self.outcome is Outcome.TIMED_OUT:
            return f"timed out {after}"
        if self.outcome is Outcome.CANCELLED:
            return f"was cancelled {after}"
        if self.exit_code is None:
            return "could not be started"
        return f"{describe_exit(self.exit_code)} {after}"


def describe_exit(exit_code: int) -> str:
    """``exited 1`` or ``was killed by SIGKILL`` (Popen reports a signal as a negative code)."""
    if exit_code >= 0:
        return f"exited {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    return f"was killed by {name}"
