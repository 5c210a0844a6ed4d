"""A command's output: streamed line by line into the run log and a bounded tail, through redaction."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

TAIL_LINES = 60
# Error messages quote the tail; one enormous line (a JSON blob on stderr) must not
# swamp them. The log itself keeps lines whole.
_TAIL_LINE_MAX_CHARS = 2000
# After the whole group is gone the pipes reach EOF at once; if they do not, a
# process that left the group (setsid, a daemon) still holds them.
_READER_JOIN_TIMEOUT = 5.0
_LOG_FILE_MODE = 0o600


class Output:
    """The run log and the tail, shared by the reader threads."""

    def __init__(self, log_path: Path | None, scrub: Callable[[str], str]) -> None:
        self._scrub = scrub
        self._lock = threading.Lock()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._log: IO[str] | None = _open_log(log_path) if log_path is not None else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None  # a reader left behind (see join_readers) writes nothing more

    def line(self, text: str) -> None:
        """One line of the command's output: redacted, logged, kept in the tail."""
        clean = self._scrub(text)
        with self._lock:
            self._write(clean)
            self._tail.append(_shorten(clean))

    def note(self, text: str) -> None:
        """A line of tfops' own (header, footer): logged only. Callers redact it."""
        with self._lock:
            self._write(text)

    def tail(self) -> str:
        with self._lock:
            return "\n".join(self._tail)

    def _write(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()


def _open_log(log_path: Path) -> IO[str]:
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only: even redacted, a run log describes the infrastructure.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _LOG_FILE_MODE)
    return open(fd, "a", encoding="utf-8", errors="replace")


def _shorten(line: str) -> str:
    if len(line) <= _TAIL_LINE_MAX_CHARS:
        return line
    return line[:_TAIL_LINE_MAX_CHARS] + f"… [{len(line) - _TAIL_LINE_MAX_CHARS} more characters]"


def start_readers(
    proc: subprocess.Popen[bytes], output: Output, capture_stdout: bool
) -> tuple[list[str], list[threading.Thread]]:
    captured: list[str] = []
    jobs: list[tuple[Callable[..., object], tuple]]
    assert proc.stdout is not None
    if capture_stdout:
        assert proc.stderr is not None
        jobs = [(_read_all, (proc.stdout, captured)), (_read_lines, (proc.stderr, output))]
    else:
        jobs = [(_read_lines, (proc.stdout, output))]  # stderr is merged into it
    readers = [
        # Daemon: a reader stuck on a pipe held by an escaped process must not keep
        # tfops from exiting.
        threading.Thread(target=target, args=args, name=f"proc-{proc.pid}-reader", daemon=True)
        for target, args in jobs
    ]
    for reader in readers:
        reader.start()
    return captured, readers


def _read_lines(pipe: IO[bytes], output: Output) -> None:
    with pipe:
        for raw in iter(pipe.readline, b""):
            output.line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _read_all(pipe: IO[bytes], captured: list[str]) -> None:
    with pipe:
        captured.append(pipe.read().decode("utf-8", errors="replace"))


def join_readers(readers: list[threading.Thread], output: Output) -> None:
    deadline = time.monotonic() + _READER_JOIN_TIMEOUT
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    if any(reader.is_alive() for reader in readers):
        output.line(
            "[tfops: a process outside the command's process group still holds its output; stopped reading]"
        )
