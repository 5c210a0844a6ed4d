"""One run per stack at a time, across processes (the daemon and one-shot CLI commands): a file
lock in the stack's state directory, which the reconciler holds while it works on a run."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tfops import proc
from tfops.errors import RunCancelled
from tfops.models import Stack


@contextmanager
def stack_lock(stacks_dir: Path, stack: Stack, cancel: proc.Cancel | None) -> Iterator[None]:
    """Wait for the stack's lock (RunCancelled if `cancel` is set meanwhile); hold it while inside."""
    lock_dir = stacks_dir / stack.name
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "run.lock", "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel is not None and cancel.wait(0.2):
                    raise RunCancelled("stopped while waiting for another run on this stack") from None
                if cancel is None:
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
