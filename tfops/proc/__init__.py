"""Starting processes: the only package in tfops that does, and :func:`run` its one door.

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

:func:`run` is here; what it leans on lives beside it: ``result`` (how a command
ended), ``group`` (supervising the process group: timeout, cancel, kill, reaping),
``output`` (the run log and the tail) and ``env`` (the environment allowlist).

The environment is never inherited wholesale: :func:`build_env` and
:func:`terraform_env` start from an allowlist, so tfops' own secrets (``TFOPS_*``)
never reach a child process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from tfops.proc.env import DEFAULT_TERRAFORM_PASSTHROUGH, build_env, terraform_env
from tfops.proc.group import footer, restore_sigint, wait_for_end
from tfops.proc.output import Output, join_readers, start_readers
from tfops.proc.result import Cancel, Outcome, ProcResult, describe_exit

__all__ = [
    "DEFAULT_TERRAFORM_PASSTHROUGH",
    "Cancel",
    "Outcome",
    "ProcResult",
    "build_env",
    "describe_exit",
    "restore_sigint",
    "run",
    "terraform_env",
]


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
    with Output(log_path, scrub) as output:
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
        captured, readers = start_readers(proc, output, capture_stdout)
        deadline = started + timeout if timeout is not None else None
        ending = wait_for_end(proc, on_start, deadline, cancel, grace)
        duration = time.monotonic() - started
        join_readers(readers, output)
        outcome = ending.interrupted or (Outcome.SUCCEEDED if proc.returncode in ok_codes else Outcome.FAILED)
        output.note(footer(ending, proc.returncode, duration, timeout, grace))
        return _result(shown_argv, cwd_text, outcome, proc.returncode, duration, output, "".join(captured))


def _result(
    argv: tuple[str, ...],
    cwd: str,
    outcome: Outcome,
    exit_code: int | None,
    duration: float,
    output: Output,
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
