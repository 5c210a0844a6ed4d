"""Which stacks a set of changed repository paths affects: by path prefix, or following the local
modules a stack calls (`ModuleAwareDetector`). Pure apart from reading `.tf` files for module
sources; the poller's per-commit index (tfops.changeindex) builds on the same functions.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from tfops.models import Stack


class ChangeDetector(Protocol):
    """Decides which stacks a set of changed repository paths affects.

    The seam for smarter detection (a change to a local module affects every stack
    that calls it) without touching the callers.
    """

    def affected(self, stacks: Sequence[Stack], changed_paths: Iterable[str]) -> list[Stack]: ...


class PathPrefixDetector:
    """A stack is affected by a change inside its directory or to one of its var or backend config files.

    ``stacks/app`` is affected by ``stacks/app/main.tf`` but not by
    ``stacks/application/main.tf``; a stack at the repository root (``.``) by every change.
    """

    def affected(self, stacks: Sequence[Stack], changed_paths: Iterable[str]) -> list[Stack]:
        changed = [_normalise_changed(path) for path in changed_paths]
        changed = [path for path in changed if path]
        return [stack for stack in stacks if any(_touches(stack, path) for path in changed)]


def _normalise_changed(path: str) -> str:
    normalised = posixpath.normpath(path.strip().replace("\\", "/")) if path.strip() else ""
    return "" if normalised == "." else normalised.removeprefix("./")


def _touches(stack: Stack, changed: str) -> bool:
    if stack.path == "." or changed == stack.path or changed.startswith(stack.path + "/"):
        return True
    # A var file or backend config file shared from outside the stack directory is part of the
    # stack's input too.
    return any(
        posixpath.normpath(posixpath.join(stack.path, name)) == changed
        for name in (*stack.var_files, *stack.backend_config)
    )


_LOCAL_SOURCE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)


def local_module_dirs(repo_root: Path, stack_path: str) -> frozenset[str]:
    """Directories of the local modules (`source = "../x"`) a stack calls, transitively.

    Only local paths count: registry and Git modules are pinned by version or ref in
    the stack's own code, so a change to them is a change inside the stack directory.
    Paths that leave the repository are ignored, as Terraform would not find them in a
    view of the commit either; so are folders and files that are symlinks resolving
    outside it (they are never read: `x.tf -> /dev/zero` must not hang a poll).
    """
    root = Path(os.path.realpath(repo_root))
    return module_closure(stack_path, lambda directory: module_sources(root, directory))


def module_sources(root: Path, directory: str) -> frozenset[str]:
    """The local module folders that the `*.tf` files directly in `directory` call (`root`: a real path)."""
    found: set[str] = set()
    if not inside_repository(root, root / directory):
        return frozenset()
    for tf_file in sorted((root / directory).glob("*.tf")):
        if not inside_repository(root, tf_file) or not tf_file.is_file():
            continue
        for source in _LOCAL_SOURCE.findall(tf_file.read_text(errors="replace")):
            target = posixpath.normpath(posixpath.join(directory, source))
            if target == ".." or target.startswith("../") or target in found:
                continue
            if (root / target).is_dir() and inside_repository(root, root / target):
                found.add(target)
    return frozenset(found)


def module_closure(stack_path: str, sources: Callable[[str], frozenset[str]]) -> frozenset[str]:
    """The module folders `stack_path` calls, transitively, given each folder's direct calls."""
    found: set[str] = set()
    pending = [stack_path]
    while pending:
        for target in sources(pending.pop()):
            if target not in found and target != stack_path:
                found.add(target)
                pending.append(target)
    return frozenset(found)


class ModuleAwareDetector:
    """A stack is also affected by a change inside any local module it calls.

    Module calls are read from the checkout at the new head, where the stacks were
    discovered: a module the stack stopped calling is a change to the stack itself.
    """

    def __init__(self, repo_root: Path) -> None:
        self.repo_root = repo_root
        self._paths = PathPrefixDetector()

    def affected(self, stacks: Sequence[Stack], changed_paths: Iterable[str]) -> list[Stack]:
        changed = [path for path in (_normalise_changed(p) for p in changed_paths) if path]
        affected = []
        for stack in stacks:
            if self._paths.affected([stack], changed):
                affected.append(stack)
                continue
            modules = local_module_dirs(self.repo_root, stack.path)
            if any(path == module or path.startswith(module + "/") for module in modules for path in changed):
                affected.append(stack)
        return affected


DEFAULT_CHANGE_DETECTOR: ChangeDetector = PathPrefixDetector()


def affected_stacks(
    stacks: Sequence[Stack], changed_paths: Iterable[str], detector: ChangeDetector | None = None
) -> list[Stack]:
    """The stacks, in their given order, that the changed paths (relative to the repo root) affect."""
    return (detector or DEFAULT_CHANGE_DETECTOR).affected(stacks, changed_paths)


def inside_repository(root: Path, path: Path) -> bool:
    """Whether `path`, every symlink on the way resolved, stays in the repository at `root` (a real path)."""
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents
