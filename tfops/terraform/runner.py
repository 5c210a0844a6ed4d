"""Terraform commands for one run: init, plan, show -json, apply — all through tfops.proc.

Command lines are built with python-terraform's `generate_cmd_string` (flags from
keyword arguments; var files, never var dicts, so no temporary tfvars files are
left behind). python-terraform's own execution is not used: it has no timeout,
no streaming and no graceful cancel. Nothing a user types becomes a flag: stack
names, paths and var files come from validated configuration.

Layout of one stack's persistent data (outside the per-run view of the commit):

    <data_dir>/stacks/<name>/
        tfdata/                TF_DATA_DIR: providers, modules, backend config
        terraform.tfstate      local state, for stacks without a backend block
        lock.hcl               the dependency lock file init produced (when the repo has none)
        init.fingerprint       what `init` last ran for; equal → init is skipped

A stack's `backend_config` files (committed in Git, inside the stack directory) go to
`init` as `-backend-config=<path relative to the stack>`; their content is part of the
init fingerprint, so editing one re-runs init.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, Terraform

from tfops import orphans, proc
from tfops.errors import (
    ConfigError,
    InitRequiredError,
    PlanFormatError,
    RunCancelled,
    RunTimedOut,
    TerraformError,
)
from tfops.models import Stack
from tfops.terraform.diagnostics import classify
from tfops.terraform.local_state import (
    BACKEND_BLOCK,
    BACKEND_FILE,
    local_state_refusal,
    top_level_code,
    without_backend,
)

log = logging.getLogger(__name__)

LOCK_FILE = ".terraform.lock.hcl"
PLAN_FILE = "plan.tfplan"  # in the run's directory: the saved plan an apply reads
# Beside a lock file tfops put into a view (the repository commits none): views are shared
# by the runs of a commit, so "the commit's own lock file" must be told apart from our copy.
LOCK_COPY_MARK = ".terraform.lock.hcl.tfops-copy"
_LOCAL_BACKEND_BLOCK = re.compile(r'^\s*backend\s+"local"', re.MULTILINE)
_DRIFT_NOTE = re.compile(r"outside of (?:Terraform|OpenTofu)")


class BackendConfigError(ConfigError):
    """A stack's `backend_config` entry tfops will not pass to `terraform init`."""

    hint = (
        "backend_config files are paths relative to the stack directory, committed in Git, "
        "inside that directory, and without '=' (Terraform would read it as key=value)"
    )


def tf_data_dir(state_dir: Path) -> Path:
    """A stack's TF_DATA_DIR inside its persistent state folder (recovery looks for it too:
    Terraform passes it on to providers and local-exec commands)."""
    return state_dir / "tfdata"


@dataclass(frozen=True)
class Workspace:
    """Where one run's Terraform executes."""

    stack: Stack
    source_dir: Path  # the stack's directory inside the run's view of the commit
    state_dir: Path  # persistent per stack
    run_dir: Path  # per run: plan file, log
    run_id: int | None = None  # whose process group `on_group` records
    # The AWS environment for a Terraform command (its phase's role credentials and the stack's
    # secrets), or None: the stack needs nothing from AWS and inherits as configured.
    cloud_env: Callable[[str], Mapping[str, str]] | None = None

    @property
    def tf_data_dir(self) -> Path:
        return tf_data_dir(self.state_dir)

    @property
    def plan_path(self) -> Path:
        return self.run_dir / PLAN_FILE

    @property
    def log_path(self) -> Path:
        return self.run_dir / "run.log"


@dataclass(frozen=True)
class PlanResult:
    plan_path: Path
    plan_sha256: str
    exit_code: int  # 0 no changes, 2 changes (detailed exit code)
    terraform_seconds: float
    mentions_drift: bool  # Terraform's output says objects changed outside of it

    @property
    def certainly_empty(self) -> bool:
        """Nothing to apply and nothing drifted: `show -json` would only confirm it.

        Exit code 0 alone is not enough (drift that needs no change still exits 0),
        and exit code 2 is never trusted alone (check blocks give 2 as well).
        """
        return self.exit_code == 0 and not self.mentions_drift


@dataclass
class Deadline:
    """The run's wall-clock budget, shared by all of its commands."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


@dataclass(frozen=True)
class RunnerSettings:
    binary: str
    cli_config: Path | None = None
    plugin_cache_dir: Path | None = None
    lock_timeout: float = 300.0
    stop_grace: float = 60.0
    passthrough: Sequence[str] = ()
    inherit: Mapping[str, str] = field(default_factory=dict)
    # Several daemons share the store (tfops.ha): runs move between instances, each with its own
    # data_dir, so a stack without a remote backend is refused rather than given local state;
    # False on the instance `ha.local_state_instance` names (tfops.ha.pinning).
    remote_state_only: bool = False


# Told a run's Terraform process group when it starts, and None when it ended, so that a
# restart after a crash can end what is left of it (tfops.orphans).
GroupHook = Callable[[int, "orphans.GroupRecord | None"], None]


class TerraformRunner:
    def __init__(self, settings: RunnerSettings, *, on_group: GroupHook | None = None) -> None:
        self.settings = settings
        self.on_group = on_group
        self._cmd = Terraform(terraform_bin_path=settings.binary)
        self._init_lock = threading.Lock()
        self.terraform_seconds = 0.0  # all threads together (benchmarks)
        self._this_thread = threading.local()  # per worker thread: a run's own Terraform time

    def thread_terraform_seconds(self) -> float:
        """Seconds spent in Terraform processes started by the calling thread, so far."""
        return getattr(self._this_thread, "seconds", 0.0)

    # -- public steps --------------------------------------------------------

    def prepare(self, ws: Workspace, *, deadline: Deadline, cancel: proc.Cancel | None, redact) -> None:
        """Make the view runnable: state location, lock file, and init only when needed."""
        ws.state_dir.mkdir(parents=True, exist_ok=True)
        ws.run_dir.mkdir(parents=True, exist_ok=True)
        self._place_local_state(ws)
        fingerprint = self._init_fingerprint(ws)
        self._restore_lock_file(ws)
        marker = ws.state_dir / "init.fingerprint"
        if marker.exists() and marker.read_text() == fingerprint and ws.tf_data_dir.exists():
            log.debug("init skipped for %s: fingerprint unchanged", ws.stack.name)
            return
        self.init(ws, deadline=deadline, cancel=cancel, redact=redact)
        marker.write_text(fingerprint)

    def init_argv(self, ws: Workspace) -> list[str]:
        """`terraform init`'s command line: one `-backend-config=<file>` element per checked file,
        relative to the stack directory (Terraform's working directory)."""
        files = backend_config_files(ws.stack.name, ws.stack.backend_config, ws.source_dir)
        return self._argv("init", input=False, no_color=IsFlagged, backend_config=list(files) or None)

    def init(self, ws: Workspace, *, deadline: Deadline, cancel: proc.Cancel | None, redact) -> None:
        argv = self.init_argv(ws)
        committed = _committed_lock(ws)
        with self._plugin_cache_lock():
            self._run(ws, argv, deadline=deadline, cancel=cancel, redact=redact)
        if not committed:
            self._save_lock_file(ws)

    @contextmanager
    def _plugin_cache_lock(self) -> Iterator[None]:
        """Terraform's plugin cache is not safe for concurrent installs (seen with 1.11:
        "Failed to install provider"); inits are rare, so they take turns."""
        cache = self.settings.plugin_cache_dir
        with self._init_lock:
            if cache is None:
                yield
                return
            cache.mkdir(parents=True, exist_ok=True)
            with open(cache / ".tfops-init.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def plan(self, ws: Workspace, *, deadline: Deadline, cancel: proc.Cancel | None, redact) -> PlanResult:
        """`plan -out` with the detailed exit code; re-initialises once if Terraform asks for it."""
        try:
            return self._plan_once(ws, deadline=deadline, cancel=cancel, redact=redact)
        except InitRequiredError:
            log.info("Terraform asked for init in %s; re-initialising once", ws.stack.name)
            # prepare() left the marker at the current fingerprint; what changed is not in it.
            self.init(ws, deadline=deadline, cancel=cancel, redact=redact)
            return self._plan_once(ws, deadline=deadline, cancel=cancel, redact=redact)

    def show_json(
        self, ws: Workspace, plan_path: Path, *, deadline: Deadline, cancel, redact
    ) -> dict[str, Any]:
        argv = self._argv("show", str(plan_path), json=IsFlagged, no_color=IsFlagged)
        # stdout holds sensitive values in clear: proc keeps it in memory, out of the log.
        result = self._run(ws, argv, deadline=deadline, cancel=cancel, redact=redact, capture_stdout=True)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise PlanFormatError(f"`terraform show -json` did not print JSON: {exc}") from None

    def apply(self, ws: Workspace, plan_path: Path, *, deadline: Deadline, cancel, redact) -> None:
        argv = self._argv(
            "apply",
            str(plan_path),
            input=False,
            no_color=IsFlagged,
            lock_timeout=f"{int(self.settings.lock_timeout)}s",
        )
        self._run(ws, argv, deadline=deadline, cancel=cancel, redact=redact)

    # -- internals -----------------------------------------------------------

    def _plan_once(self, ws: Workspace, *, deadline: Deadline, cancel, redact) -> PlanResult:
        ws.plan_path.unlink(missing_ok=True)
        argv = self._argv(
            "plan",
            out=str(ws.plan_path),
            detailed_exitcode=IsFlagged,
            lock_timeout=f"{int(self.settings.lock_timeout)}s",
            input=False,
            no_color=IsFlagged,
            var_file=list(ws.stack.var_files) or None,
        )
        offset = ws.log_path.stat().st_size if ws.log_path.exists() else 0
        result = self._run(ws, argv, deadline=deadline, cancel=cancel, redact=redact, ok_codes=(0, 2))
        return PlanResult(
            plan_path=ws.plan_path,
            plan_sha256=sha256_file(ws.plan_path),
            exit_code=result.exit_code or 0,
            terraform_seconds=result.duration,
            mentions_drift=bool(_DRIFT_NOTE.search(_read_from(ws.log_path, offset))),
        )

    def _argv(self, command: str, *args: str, **flags: Any) -> list[str]:
        flags = {key: value for key, value in flags.items() if value is not None}
        return self._cmd.generate_cmd_string(command, *args, **flags)

    def _run(
        self,
        ws: Workspace,
        argv: list[str],
        *,
        deadline: Deadline,
        cancel: proc.Cancel | None,
        redact: Callable[[str], str] | None,
        ok_codes: tuple[int, ...] = (0,),
        capture_stdout: bool = False,
    ) -> proc.ProcResult:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise RunTimedOut(f"the run used its {deadline.seconds:.0f}s before `{argv[1]}` could start")
        try:
            result = proc.run(
                argv,
                cwd=ws.source_dir,
                env=self._env(ws, argv[1]),
                log_path=ws.log_path,
                timeout=remaining,
                cancel=cancel,
                grace=self.settings.stop_grace,
                ok_codes=ok_codes,
                capture_stdout=capture_stdout,
                on_start=lambda pid: self._record_group(ws, orphans.record_of(pid)),
                redact=redact,
            )
        finally:
            self._record_group(ws, None)  # the group is gone: proc.run swept it
        self.terraform_seconds += result.duration
        self._this_thread.seconds = self.thread_terraform_seconds() + result.duration
        return _raise_for_outcome(result)

    def _record_group(self, ws: Workspace, record: orphans.GroupRecord | None) -> None:
        if self.on_group is None or ws.run_id is None:
            return
        try:
            self.on_group(ws.run_id, record)
        except Exception:
            log.warning("could not record the process group of run %s", ws.run_id, exc_info=True)

    def _env(self, ws: Workspace, command: str) -> dict[str, str]:
        extra = dict(ws.stack.env)
        if ws.stack.workspace != "default":
            extra["TF_WORKSPACE"] = ws.stack.workspace
        env = proc.terraform_env(
            inherit=self._inherited(ws),
            cli_config=self.settings.cli_config,
            plugin_cache_dir=self.settings.plugin_cache_dir,
            data_dir=ws.tf_data_dir,
            passthrough=[*proc.DEFAULT_TERRAFORM_PASSTHROUGH, *self.settings.passthrough],
            extra=extra,
        )
        if ws.cloud_env is not None:
            env.update(ws.cloud_env(command))
        return env

    def _inherited(self, ws: Workspace) -> Mapping[str, str]:
        """The daemon's environment a stack may inherit: none of its own AWS identity when the
        stack has roles (only the phase's temporary credentials reach that Terraform)."""
        if not ws.stack.aws.has_roles:
            return self.settings.inherit
        return {name: value for name, value in self.settings.inherit.items() if not name.startswith("AWS_")}

    def _place_local_state(self, ws: Workspace) -> None:
        """Keep local state outside the per-run view; leave declared backends alone."""
        code = top_level_code(ws.source_dir)
        if not without_backend(code) and not _LOCAL_BACKEND_BLOCK.search(code):
            return
        if _LOCAL_BACKEND_BLOCK.search(code):
            # A declared local backend with a relative path would put state inside the
            # throwaway view; refusing is safer than losing state.
            raise TerraformError(
                f'stack {ws.stack.name} declares backend "local"',
                hint="remove the backend block (tfops keeps local state under its data dir) "
                "or use a remote backend",
            )
        if self.settings.remote_state_only:
            message, hint = local_state_refusal([ws.stack.name])
            raise TerraformError(message, hint=hint)
        state = ws.state_dir / "terraform.tfstate"
        workspaces = ws.state_dir / "terraform.tfstate.d"
        (ws.source_dir / BACKEND_FILE).write_text(
            "# Written by tfops for this run: local state lives outside the run's view.\n"
            "terraform {\n"
            '  backend "local" {\n'
            f"    path          = {json.dumps(str(state))}\n"
            f"    workspace_dir = {json.dumps(str(workspaces))}\n"
            "  }\n"
            "}\n"
        )

    def _restore_lock_file(self, ws: Workspace) -> None:
        """Without a committed lock file, reuse the provider selections init made before."""
        saved = ws.state_dir / "lock.hcl"
        if _committed_lock(ws) or not saved.exists():
            return
        shutil.copyfile(saved, ws.source_dir / LOCK_FILE)
        (ws.source_dir / LOCK_COPY_MARK).touch()

    def _save_lock_file(self, ws: Workspace) -> None:
        produced = ws.source_dir / LOCK_FILE
        if produced.exists():
            shutil.copyfile(produced, ws.state_dir / "lock.hcl")
            (ws.source_dir / LOCK_COPY_MARK).touch()

    def _init_fingerprint(self, ws: Workspace) -> str:
        """What init depends on, read from the commit as it is (the lock file only if the
        repository commits one). Module and provider changes that slip past it are caught
        by Terraform itself (InitRequiredError) and fixed by one re-init."""
        digest = hashlib.sha256()
        for part in (
            self.settings.binary,
            _read(self.settings.cli_config),
            _committed_lock(ws),
            _read(ws.source_dir / BACKEND_FILE),
            "\n".join(BACKEND_BLOCK.findall(top_level_code(ws.source_dir))),
            ws.stack.workspace,
            *_backend_config_parts(ws),
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


def backend_config_files(stack: str, entries: Sequence[str], source_dir: Path) -> tuple[str, ...]:
    """`entries` normalised, each checked to be a file inside `source_dir` (symlinks resolved).

    A value with '=' would be a key=value setting to Terraform, not a file, and a path out
    of the stack directory could read a file that is not the stack's: both are refused.
    """
    root = Path(os.path.realpath(source_dir))
    checked = []
    for entry in entries:
        text = entry.strip() if isinstance(entry, str) else ""
        normalised = posixpath.normpath(text) if text else ""
        problem = _backend_config_problem(text, normalised)
        if problem is None:
            real = Path(os.path.realpath(root / normalised))
            if root not in real.parents:
                problem = "leaves the stack directory"
            elif not real.is_file():
                problem = "is not a file in the stack directory at this commit"
        if problem:
            raise BackendConfigError(f"stack {stack}: backend_config {entry!r} {problem}")
        checked.append(normalised)
    return tuple(checked)


def _backend_config_problem(text: str, normalised: str) -> str | None:
    if not text:
        return "is empty"
    if text.startswith(("/", "~")) or "\\" in text:
        return "is not a relative POSIX path"
    if "=" in text:
        return "contains '='"
    if normalised in (".", "..") or normalised.startswith("../"):
        return "leaves the stack directory"
    return None


def _backend_config_parts(ws: Workspace) -> list[str]:
    """Each backend config file's path and content hash (init is called with them)."""
    files = backend_config_files(ws.stack.name, ws.stack.backend_config, ws.source_dir)
    return [f"{name}:{sha256_file(ws.source_dir / name)}" for name in files]


def _raise_for_outcome(result: proc.ProcResult) -> proc.ProcResult:
    if result.outcome is proc.Outcome.SUCCEEDED:
        return result
    if result.outcome is proc.Outcome.CANCELLED:
        raise RunCancelled(f"`{' '.join(result.argv[:2])}` was interrupted")
    if result.outcome is proc.Outcome.TIMED_OUT:
        raise RunTimedOut(f"`{' '.join(result.argv[:2])}` timed out after {result.duration:.0f}s")
    if result.exit_code is None:
        raise TerraformError(result.tail.strip() or "terraform could not be started", argv=result.argv)
    raise classify(result.tail, argv=result.argv, exit_code=result.exit_code)


def _committed_lock(ws: Workspace) -> str:
    """The lock file the commit carries ("" if none): never a copy tfops put there."""
    if (ws.source_dir / LOCK_COPY_MARK).exists():
        return ""
    return _read(ws.source_dir / LOCK_FILE)


def _read_from(path: Path, offset: int) -> str:
    with open(path, errors="replace") as handle:
        handle.seek(offset)
        return handle.read()


def _read(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
