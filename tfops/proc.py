"""Starting processes: the only module in tfops that does.

Every command (terraform, git helpers, provider launchers) goes through :func:`run`,
so that every one of them behaves the same way:

- it ends in exactly one :class:`Outcome`, and :func:`run` returns instead of raising
  when the *process* fails (missing program, bad exit code, timeout, cancel); callers
  turn a bad :class:`ProcResult` into the right ``TfopsError`` with ``describe()``;
- it never goes through a shell: argv is a list, so no quoting bug or injected ``;``
  can change what runs;
- it runs in its own process group with stdin on /dev/null, so a prompt can never
  hang it and one signal reaches Terraform and the providers it started;
- its output is streamed line by line into the run log as it arrives (``tail -f``
  works), through ``redact`` first, and the last lines are kept for error messages;
- a timeout or a cancel sends ONE SIGINT to the group (Terraform then stops cleanly
  and writes its state), waits ``grace`` seconds, and only then sends SIGKILL.

The environment is never inherited wholesale: :func:`build_env` and
:func:`terraform_env` start from an allowlist, so tfops' own secrets (``TFOPS_*``)
never reach a child process.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import IO, Self

TAIL_LINES = 60
# Error messages quote the tail; one enormous line (a JSON blob on stderr) must not
# swamp them. The log itself keeps lines whole.
_TAIL_LINE_MAX_CHARS = 2000
# How often the supervisor looks at the child, the clock and the cancel signal: first
# after 1 ms, then less and less often up to every 50 ms. Git reads (rev-parse, log)
# take milliseconds and run often; a fixed 50 ms would be most of their cost.
_FIRST_POLL_INTERVAL = 0.001
_POLL_INTERVAL = 0.05
# After the whole group is gone the pipes reach EOF at once; if they do not, a
# process that left the group (setsid, a daemon) still holds them.
_READER_JOIN_TIMEOUT = 5.0
_LOG_FILE_MODE = 0o600

_EMPTY: Mapping[str, str] = MappingProxyType({})


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


# --------------------------------------------------------------------------- run


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    log_path: Path | None = None,
    timeout: float | None = None,
    cancel: Cancel | None = None,
    grace: float = 30.0,
    ok_codes: Collection[int] = (0,),
    capture_stdout: bool = False,
    on_start: Callable[[int], None] | None = None,
    redact: Callable[[str], str] | None = None,
) -> ProcResult:
    """Run ``argv`` (no shell) in ``cwd`` with exactly ``env``; always return how it ended.

    Output goes line by line to ``log_path`` (appended; parents created) and into the
    result's ``tail``, both through ``redact``. With ``capture_stdout`` stdout goes
    only to ``ProcResult.stdout`` (it may hold secrets in clear), never to the log.
    ``timeout`` (wall clock) or ``cancel`` interrupt the command: one SIGINT to its
    process group, ``grace`` seconds, then SIGKILL.

    Raises only for caller mistakes (bad argv or limits) and when the log cannot be
    opened; a process that cannot start or fails is a result, not an exception.
    """
    args = _checked_argv(argv)
    _check_limits(timeout, grace)
    scrub = _safe_redactor(redact)
    shown_argv = tuple(scrub(arg) for arg in args)
    cwd_text = os.fspath(cwd)
    with _Output(log_path, scrub) as output:
        output.note(scrub("$ " + shlex.join(shown_argv)))
        started = time.monotonic()
        if cancel is not None and cancel.is_cancelled:
            output.note("[cancelled before start]")
            return _result(shown_argv, cwd_text, Outcome.CANCELLED, None, 0.0, output)
        try:
            proc = _spawn(args, cwd_text, env, capture_stdout)
        except OSError as exc:
            output.line(_spawn_failure(exc, shown_argv[0], cwd_text, env))
            output.note("[could not start]")
            return _result(shown_argv, cwd_text, Outcome.FAILED, None, time.monotonic() - started, output)
        captured, readers = _start_readers(proc, output, capture_stdout)
        deadline = started + timeout if timeout is not None else None
        ending = _wait_for_end(proc, on_start, deadline, cancel, grace)
        duration = time.monotonic() - started
        _join_readers(readers, output)
        outcome = ending.interrupted or (Outcome.SUCCEEDED if proc.returncode in ok_codes else Outcome.FAILED)
        output.note(_footer(ending, proc.returncode, duration, timeout, grace))
        return _result(shown_argv, cwd_text, outcome, proc.returncode, duration, output, "".join(captured))


def _result(
    argv: tuple[str, ...],
    cwd: str,
    outcome: Outcome,
    exit_code: int | None,
    duration: float,
    output: _Output,
    stdout: str = "",
) -> ProcResult:
    return ProcResult(argv, cwd, outcome, exit_code, round(duration, 3), output.tail(), stdout)


def _checked_argv(argv: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too; running "terraform plan" as one program
    # name is never what the caller meant.
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list of strings, not a single string")
    args = tuple(argv)
    if not args:
        raise ValueError("argv is empty: there is no program to run")
    bad = [arg for arg in args if not isinstance(arg, str)]
    if bad:
        raise TypeError(f"every argv item must be a str; got {', '.join(type(arg).__name__ for arg in bad)}")
    if not args[0]:
        raise ValueError("argv[0] is empty: there is no program to run")
    return args


def _check_limits(timeout: float | None, grace: float) -> None:
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {timeout}")
    if grace < 0:
        raise ValueError(f"grace must be zero or positive, got {grace}")


def _safe_redactor(redact: Callable[[str], str] | None) -> Callable[[str], str]:
    if redact is None:
        return lambda text: text

    def scrub(text: str) -> str:
        # A failing redactor must neither let the line through nor kill the reader
        # thread (an undrained pipe would block the child until the timeout).
        try:
            return redact(text)
        except Exception:  # noqa: BLE001 - any failure must withhold the line
            return "[line withheld: redaction failed]"

    return scrub


def _spawn(
    args: tuple[str, ...], cwd: str, env: Mapping[str, str], capture_stdout: bool
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(args),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        # Unless stdout is captured, both streams share one pipe: the log then shows
        # an error exactly where the program wrote it, which two pipes read by two
        # threads cannot promise.
        stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
        # Own process group: one killpg reaches Terraform and its providers. A SIGINT
        # that tfops itself ignores (started as `tfops ... &`) stays ignored in the
        # child; Go programs such as Terraform re-enable it, shell scripts cannot,
        # and resetting it here would need preexec_fn, which is unsafe with threads.
        start_new_session=True,
        close_fds=True,
    )


def _spawn_failure(exc: OSError, program: str, cwd: str, env: Mapping[str, str]) -> str:
    # Popen reports a missing cwd and a missing program with the same exception type;
    # the filename tells them apart.
    if exc.filename == cwd and isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return f"working directory not found: {cwd}"
    if isinstance(exc, FileNotFoundError):
        if os.sep in program:
            return f"program not found: {program}"
        return f"program not found: {program} (not on PATH={env.get('PATH', '')!r})"
    if isinstance(exc, PermissionError):
        return f"permission denied running {program} (is it executable?)"
    return f"could not start {program}: {exc.strerror or exc}"


# ------------------------------------------------------------------ supervision


@dataclass(frozen=True)
class _Ending:
    interrupted: Outcome | None  # TIMED_OUT or CANCELLED, whichever came first
    killed_after_grace: bool


def _wait_for_end(
    proc: subprocess.Popen[bytes],
    on_start: Callable[[int], None] | None,
    deadline: float | None,
    cancel: Cancel | None,
    grace: float,
) -> _Ending:
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


def _supervise(pid: int, deadline: float | None, cancel: Cancel | None, grace: float) -> _Ending:
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
    return _Ending(interrupted, killed)


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


def _footer(ending: _Ending, exit_code: int, duration: float, timeout: float | None, grace: float) -> str:
    ended = f"{describe_exit(exit_code)} after {duration:.1f}s"
    if ending.interrupted is None:
        return f"[{ended}]"
    reason = f"timed out (limit {timeout:g}s)" if ending.interrupted is Outcome.TIMED_OUT else "cancelled"
    killed = f", SIGKILL after {grace:g}s grace" if ending.killed_after_grace else ""
    return f"[{reason}: sent SIGINT to the process group{killed}; {ended}]"


# ---------------------------------------------------------------------- output


class _Output:
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
                self._log = None  # a reader left behind (see _join_readers) writes nothing more

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


def _start_readers(
    proc: subprocess.Popen[bytes], output: _Output, capture_stdout: bool
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


def _read_lines(pipe: IO[bytes], output: _Output) -> None:
    with pipe:
        for raw in iter(pipe.readline, b""):
            output.line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _read_all(pipe: IO[bytes], captured: list[str]) -> None:
    with pipe:
        captured.append(pipe.read().decode("utf-8", errors="replace"))


def _join_readers(readers: list[threading.Thread], output: _Output) -> None:
    deadline = time.monotonic() + _READER_JOIN_TIMEOUT
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    if any(reader.is_alive() for reader in readers):
        output.line(
            "[tfops: a process outside the command's process group still holds its output; stopped reading]"
        )


# ------------------------------------------------------------------ environment

# What a subprocess legitimately needs from tfops' own environment: where programs
# are, who and where it runs, locale, temp dir, trust store, proxies, ssh agent.
_INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSH_AUTH_SOCK",
    }
)
_INHERITED_PATTERNS = ("LC_*",)
# Never inherited, even when a passthrough pattern matches: tfops' own secrets, and
# a CLI config tfops did not choose (terraform_env sets its own explicitly).
_NEVER_INHERITED = ("TFOPS_*", "TF_CLI_CONFIG_FILE")

# Cloud and Terraform settings a Terraform run needs from the daemon's environment
# (region, profile, role, credentials of the VM, TF_VAR_ inputs, registry tokens, logging).
DEFAULT_TERRAFORM_PASSTHROUGH: tuple[str, ...] = (
    "AWS_*",
    "GOOGLE_*",
    "CLOUDSDK_*",
    "ARM_*",
    "AZURE_*",
    "TF_VAR_*",
    "TF_LOG*",
    "TF_TOKEN_*",
)


def build_env(
    *, inherit: Mapping[str, str], passthrough: Iterable[str] = (), extra: Mapping[str, str] = _EMPTY
) -> dict[str, str]:
    """The environment for a child: the allowlist and ``passthrough`` from ``inherit``, then ``extra``.

    A ``passthrough`` entry is a variable name, or a prefix when it ends in ``*``.
    ``TFOPS_*`` and ``TF_CLI_CONFIG_FILE`` are never inherited; ``extra`` is set as given.
    """
    wanted = (*_INHERITED_PATTERNS, *_checked_patterns(passthrough))
    env = {
        name: value
        for name, value in inherit.items()
        if (name in _INHERITED_NAMES or _matches(name, wanted)) and not _matches(name, _NEVER_INHERITED)
    }
    env.update(_checked_extra(extra))
    return env


def terraform_env(
    *,
    inherit: Mapping[str, str],
    cli_config: Path | None,
    plugin_cache_dir: Path | None,
    data_dir: Path | None,
    passthrough: Iterable[str] = (),
    extra: Mapping[str, str] = _EMPTY,
) -> dict[str, str]:
    """:func:`build_env` with :data:`DEFAULT_TERRAFORM_PASSTHROUGH`, made non-interactive, and tfops' paths.

    The automation settings win over ``extra`` (a stack must not turn prompts back
    on); the paths are made absolute because Terraform runs in the stack directory.
    """
    env = build_env(inherit=inherit, passthrough=(*DEFAULT_TERRAFORM_PASSTHROUGH, *passthrough), extra=extra)
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    paths = {
        "TF_CLI_CONFIG_FILE": cli_config,
        "TF_PLUGIN_CACHE_DIR": plugin_cache_dir,
        "TF_DATA_DIR": data_dir,
    }
    env.update({name: str(Path(path).absolute()) for name, path in paths.items() if path is not None})
    return env


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(
        name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern for pattern in patterns
    )


def _checked_patterns(passthrough: Iterable[str]) -> tuple[str, ...]:
    if isinstance(passthrough, str):
        raise TypeError(f"passthrough must be a list of names, not a single string: {passthrough!r}")
    patterns = tuple(passthrough)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.rstrip("*"):
            raise ValueError(f"passthrough entry {pattern!r} must be a variable name or a NAME_PREFIX*")
        if "*" in pattern[:-1]:
            raise ValueError(f"passthrough entry {pattern!r}: '*' is only allowed at the end (a prefix)")
    return patterns


def _checked_extra(extra: Mapping[str, str]) -> dict[str, str]:
    for name, value in extra.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ValueError(f"environment variable name {name!r} is not valid")
        if not isinstance(value, str):
            # Only the type: the value may be a secret.
            raise TypeError(f"environment variable {name} must be a str, got {type(value).__name__}")
    return dict(extra)
