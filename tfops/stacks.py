"""Which directories of the repository are stacks, and which stacks a change touches.

Everything here is a pure function of its arguments, apart from reading the
directory tree in :func:`discover`: no git, no Terraform, no store.

Discovery rules (they are part of the user-facing contract, see config/tfops.example.yaml):

- A directory is a stack when it *directly* holds a ``*.tf`` or ``*.tf.json`` file.
- Explicit entries (``path:``) name one directory; it must exist at the head and hold
  Terraform files, or that stack is refused (see below).
- Glob entries (``discover:``) match directories relative to the repository root
  (``*`` stays inside one path component, ``**`` spans any number of them). A glob
  that matches nothing is fine: it is logged, not an error, so that a repository can
  grow into its layout. The repository root itself is never discovered; declare it
  with ``path: "."`` and a ``name``.
- Hidden directories (a component starting with ``.``) are never discovered: that
  covers ``.git`` and ``.terraform`` (whose module copies hold ``.tf`` files of their own).
- An explicit entry wins over a discovered directory with the same path; when two
  globs match one directory, the first entry wins.
- A discovered stack is named after its directory (``stacks/app`` → ``app``). When that
  name is taken by another stack, discovered or explicit, the discovered stack is named
  after its full path with ``/`` replaced by ``-`` (``stacks/app`` → ``stacks-app``), so
  a name never silently depends on which other directories exist. Characters outside
  ``[A-Za-z0-9_.-]`` in a directory name become ``_``. Stacks whose names still collide
  are all refused: which one wins must not be a guess.
- A stack directory (or a directory on the way to it), a file directly in it (``main.tf``,
  ``terraform.tfvars``, ...) or one of its var or backend config files that is a symlink resolving outside
  the repository refuses the stack: tfops must never run Terraform on code that is not in Git.

A refused stack is left out with a typed reason (:class:`RefusedStack`); the others are
discovered as usual (:func:`discover`). One bad folder pushed to the branch never stops
the deploys of the rest. Stacks and refusals come back sorted by name.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tfops.changes import inside_repository
from tfops.config import StackDefaults, StackEntry
from tfops.config.aws import merge_stack_aws
from tfops.config.drift import drift_ignore_rules
from tfops.config.guards import stack_guards
from tfops.config.windows import stack_windows
from tfops.errors import StackPathError
from tfops.models import OnDrift, OnMerge, Stack, StackAws
from tfops.naming import glob_matches, is_stack_name, safe_stack_name, validate_stack_path
from tfops.ordering import refuse_broken_order

log = logging.getLogger(__name__)

TERRAFORM_SUFFIXES = (".tf", ".tf.json")
_GLOB_MAGIC = re.compile(r"[*?\[]")


# --------------------------------------------------------------------------- discovery


class Refusal(StrEnum):
    """Why one stack is left out at a head while the others go on."""

    OUTSIDE_REPOSITORY = "outside_repository"  # the folder or one of its files is a symlink out of Git
    NOT_FOUND = "not_found"  # a configured folder that the head does not have
    NO_TERRAFORM = "no_terraform"  # a configured folder without *.tf or *.tf.json files
    RESERVED_DIRECTORY = "reserved_directory"  # a path through .git or .terraform
    INVALID_NAME = "invalid_name"
    VAR_FILE_OUTSIDE = "var_file_outside"
    NAME_CLASH = "name_clash"
    BROKEN_ORDER = "broken_order"  # depends_on names no stack here, or forms a cycle


_REFUSAL_HINTS = {
    Refusal.OUTSIDE_REPOSITORY: "tfops runs only code that is in Git: commit the files, not a symlink",
    Refusal.NOT_FOUND: "fix the stack's `path` in tfops.yaml, or remove the entry, or push the folder",
    Refusal.NO_TERRAFORM: "point the entry at the folder that holds the stack's *.tf files",
    Refusal.RESERVED_DIRECTORY: ".git and .terraform folders are never stacks: point the entry elsewhere",
    Refusal.INVALID_NAME: "give the stack a `name` of letters, digits, '_', '.' and '-'",
    Refusal.VAR_FILE_OUTSIDE: (
        "var files and backend config files are relative to the stack folder and must stay in the repository"
    ),
    Refusal.NAME_CLASH: "give the stacks distinct names with explicit entries (`path` and `name`)",
    Refusal.BROKEN_ORDER: "fix the stack's `depends_on` in tfops.yaml, or the upstream stack it names",
}


@dataclass(frozen=True)
class RefusedStack:
    """A stack tfops will not plan at this head. `detail` names repository paths only, never host paths."""

    name: str
    path: str
    reason: Refusal
    detail: str

    @property
    def hint(self) -> str:
        return _REFUSAL_HINTS[self.reason]

    def __str__(self) -> str:
        return f"stack {self.name!r} (path {self.path!r}): {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "reason": self.reason.value, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> RefusedStack:
        reason = Refusal(data["reason"])
        return cls(name=data["name"], path=data["path"], reason=reason, detail=data["detail"])


@dataclass(frozen=True)
class Discovery:
    """The stacks at a checkout, and the ones refused there (each with its reason), both by name."""

    stacks: tuple[Stack, ...] = ()
    refused: tuple[RefusedStack, ...] = ()


class _Refused(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def discover(repo_root: Path, entries: Sequence[StackEntry], defaults: StackDefaults) -> Discovery:
    """The configured stacks present in the checkout at ``repo_root``, and those refused there.

    One bad stack never hides the others: whatever is wrong with one folder (a symlink out of the
    repository, a configured folder gone from the head, a name clash) refuses that stack only.
    """
    root = Path(os.path.realpath(repo_root))
    good: list[Stack] = []
    refused: list[RefusedStack] = []
    explicit_paths, explicit_names = set(), set()
    for entry in entries:
        if entry.path is None:
            continue
        path = validate_stack_path(entry.path)  # already checked when the config was read
        name = entry.name or posixpath.basename(path)
        explicit_paths.add(path)
        explicit_names.add(name)
        _take(good, refused, name, path, _explicit_stack, root, path, name, entry, defaults)

    found: dict[str, StackEntry] = {}  # path -> the first glob entry that matched it
    for entry in entries:
        if entry.discover is None:
            continue
        matches = [path for path in _glob_stack_dirs(root, entry.discover) if path not in explicit_paths]
        if not matches:
            log.warning("stack glob %r matches no directory holding *.tf files", entry.discover)
        for path in matches:
            found.setdefault(path, entry)

    names = _discovered_names(sorted(found), taken=explicit_names)
    for path, entry in found.items():
        name = names[path]
        _take(good, refused, name, path, _discovered_stack, root, name, path, entry, defaults)
    stacks, clashes = _split_name_clashes(good)
    # A stack whose `depends_on` names no stack here (or forms a cycle) goes without its upstream.
    broken = {item.name: item.detail for item in refuse_broken_order({s.name: s.depends_on for s in stacks})}
    refused += clashes + [
        RefusedStack(s.name, s.path, Refusal.BROKEN_ORDER, broken[s.name]) for s in stacks if s.name in broken
    ]
    stacks = [stack for stack in stacks if stack.name not in broken]
    return Discovery(
        stacks=tuple(sorted(stacks, key=lambda stack: stack.name)),
        refused=tuple(sorted(refused, key=lambda item: (item.name, item.path))),
    )


def _take(
    good: list[Stack],
    refused: list[RefusedStack],
    name: str,
    path: str,
    make: Callable[..., Stack],
    *args: Any,
) -> None:
    """Append the stack `make(*args)` builds to `good`, or its refusal to `refused`."""
    try:
        good.append(make(*args))
    except _Refused as refusal:
        refused.append(RefusedStack(name=name, path=path, reason=refusal.reason, detail=refusal.detail))


def _explicit_stack(root: Path, path: str, name: str, entry: StackEntry, defaults: StackDefaults) -> Stack:
    if path == "." and not entry.name:
        raise _Refused(Refusal.INVALID_NAME, "a stack at the repository root needs a name")
    if {".git", ".terraform"} & set(path.split("/")):
        raise _Refused(Refusal.RESERVED_DIRECTORY, ".git and .terraform directories are never stacks")
    directory = root / path
    _refuse_escape(root, directory)
    if not directory.is_dir():
        raise _Refused(Refusal.NOT_FOUND, "folder not found at the head")
    if not _holds_terraform(directory):
        raise _Refused(Refusal.NO_TERRAFORM, "the folder holds no *.tf or *.tf.json files")
    if not is_stack_name(name):
        raise _Refused(Refusal.INVALID_NAME, f"the name {name!r} holds characters other than A-Za-z0-9_.-")
    return _discovered_stack(root, name, path, entry, defaults)


def _discovered_stack(root: Path, name: str, path: str, entry: StackEntry, defaults: StackDefaults) -> Stack:
    directory = root / path
    _refuse_escape(root, directory)
    _refuse_escaping_files(root, directory)
    stack = _make_stack(name, path, entry, defaults)
    _check_var_files(root, stack)
    return stack


def _make_stack(name: str, path: str, entry: StackEntry, defaults: StackDefaults) -> Stack:
    return Stack(
        name=name,
        path=path,
        workspace=entry.workspace,
        var_files=tuple(entry.var_files),
        env=tuple(sorted(entry.env.items())),
        drift_interval=defaults.drift_interval if entry.drift_interval is None else entry.drift_interval,
        on_merge=OnMerge(entry.on_merge or defaults.on_merge),
        on_drift=OnDrift(entry.on_drift or defaults.on_drift),
        approvers=tuple(defaults.approvers if entry.approvers is None else entry.approvers),
        approvals_required=entry.approvals_required or defaults.approvals_required,
        approval_ttl=entry.approval_ttl or defaults.approval_ttl,
        aws=_stack_aws(entry, defaults),
        secrets=tuple(sorted({**defaults.secrets, **entry.secrets}.items())),
        backend_config=tuple(entry.backend_config),
        drift_ignore=drift_ignore_rules(defaults.drift, entry.drift),
        guards=stack_guards(defaults.guards, entry.guards),
        windows=stack_windows(defaults.windows, defaults.timezone, entry.windows, entry.timezone),
        depends_on=tuple(dict.fromkeys(entry.depends_on)),
    )


def _stack_aws(entry: StackEntry, defaults: StackDefaults) -> StackAws:
    """The stack's `aws:` keys over `defaults.aws` (which already holds `aws.attribution` when unset)."""
    merged = merge_stack_aws(defaults.aws, entry.aws)
    return StackAws(
        plan_role=merged.plan_role,
        apply_role=merged.apply_role,
        external_id_env=merged.external_id_env,
        session_duration=merged.session_duration,
        attribution=bool(merged.attribution),
    )


def _check_var_files(root: Path, stack: Stack) -> None:
    # Var files and backend config files may be shared from a parent directory, but must stay
    # in Git (principle 1).
    files = [("var file", name) for name in stack.var_files]
    files += [("backend config file", name) for name in stack.backend_config]
    for kind, name in files:
        try:
            relative = validate_stack_path(posixpath.join(stack.path, name))
        except StackPathError:
            raise _Refused(Refusal.VAR_FILE_OUTSIDE, f"{kind} {name!r} is outside the repository") from None
        if not inside_repository(root, root / relative):
            detail = f"{kind} {name!r} is a symlink that resolves outside the repository"
            raise _Refused(Refusal.VAR_FILE_OUTSIDE, detail)


def _refuse_escape(root: Path, directory: Path) -> None:
    # The message never names where the link points: that is a host path, and refusals are shown
    # on /readyz and in `tfops status`.
    if not inside_repository(root, directory):
        detail = "the folder is a symlink that resolves outside the repository"
        raise _Refused(Refusal.OUTSIDE_REPOSITORY, detail)


def _refuse_escaping_files(root: Path, directory: Path) -> None:
    """Terraform reads every file of the folder (*.tf, *.tfvars, file() calls): none may lead out of Git."""
    try:
        with os.scandir(directory) as children:
            escaping = sorted(
                child.name
                for child in children
                if child.is_symlink() and not inside_repository(root, Path(child.path))
            )
    except OSError:
        return
    if escaping:
        what = "is a symlink that resolves" if len(escaping) == 1 else "are symlinks that resolve"
        raise _Refused(Refusal.OUTSIDE_REPOSITORY, f"{', '.join(escaping)} {what} outside the repository")


def _holds_terraform(directory: Path) -> bool:
    try:
        with os.scandir(directory) as children:
            return any(child.name.endswith(TERRAFORM_SUFFIXES) and child.is_file() for child in children)
    except OSError:
        return False


def _glob_stack_dirs(root: Path, pattern: str) -> list[str]:
    segments = [segment for segment in validate_stack_path(pattern).split("/") if segment != "."]
    return sorted(
        path
        for path in _candidate_dirs(root, segments)
        if glob_matches(path.split("/"), segments) and _holds_terraform(root / path)
    )


def _candidate_dirs(root: Path, segments: list[str]) -> Iterator[str]:
    """Every non-hidden directory below the pattern's literal prefix, as a relative POSIX path.

    The walk starts at the longest literal prefix and stops at the pattern's depth
    unless it holds ``**``, so ``stacks/*`` never walks the rest of the repository.
    Symlinked directories are listed but not descended into.
    """
    literal = []
    for segment in segments:
        if _GLOB_MAGIC.search(segment):
            break
        literal.append(segment)
    if any(part.startswith(".") for part in literal):
        return
    start = root.joinpath(*literal)
    max_depth = None if "**" in segments else len(segments) - len(literal)
    if literal and start.is_dir():
        yield "/".join(literal)
    if max_depth == 0 or start.is_symlink() or not start.is_dir():
        return
    for current, dirnames, _ in os.walk(start):
        relative_current = Path(current).relative_to(root).as_posix()
        depth = 0 if current == str(start) else Path(current).relative_to(start).as_posix().count("/") + 1
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in dirnames:
            yield name if relative_current == "." else f"{relative_current}/{name}"
        if max_depth is not None and depth + 1 >= max_depth:
            dirnames.clear()


def _discovered_names(paths: list[str], taken: set[str]) -> dict[str, str]:
    short = {path: safe_stack_name(posixpath.basename(path)) for path in paths}
    short_counts: dict[str, int] = {}
    for name in short.values():
        short_counts[name] = short_counts.get(name, 0) + 1
    return {
        path: name
        if short_counts[name] == 1 and name not in taken
        else safe_stack_name(path.replace("/", "-"))
        for path, name in short.items()
    }


def _split_name_clashes(stacks: Sequence[Stack]) -> tuple[list[Stack], list[RefusedStack]]:
    """Stacks whose name is unique, and the others refused: a name clash must not guess a winner."""
    paths_by_name: dict[str, list[str]] = {}
    for stack in stacks:
        paths_by_name.setdefault(stack.name, []).append(stack.path)
    unique = [stack for stack in stacks if len(paths_by_name[stack.name]) == 1]
    clashes = [
        RefusedStack(
            name=stack.name,
            path=stack.path,
            reason=Refusal.NAME_CLASH,
            detail=f"stack name {stack.name!r} is used by {', '.join(sorted(paths_by_name[stack.name]))}",
        )
        for stack in stacks
        if len(paths_by_name[stack.name]) > 1
    ]
    return unique, clashes


def stack_env(stack: Stack) -> dict[str, str]:
    """The extra environment the stack's entry asks Terraform to run with (``env:`` in the config)."""
    return dict(stack.env)
