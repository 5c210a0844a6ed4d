"""Which stacks a commit touches, at a cost that follows the change, not the estate.

The rules are those of :class:`tfops.stacks.ModuleAwareDetector` (a change inside a stack's
folder, to one of its var or backend config files, or inside a local module it calls,
transitively); this module only keeps what answering them needs between commits:

- :class:`ModuleIndex`: each folder's direct local module calls, read once and kept until a
  commit changes a ``*.tf`` file of that folder (or the tree's shape);
- :class:`StackIndex`: the reverse maps (folder -> stacks there, module -> stacks calling it,
  file -> stacks using it as a var file), so the stacks a changed path touches are found by
  walking up the path's parent folders, never by visiting every stack;
- :class:`ChangeTracker`: "does any commit after `since` touch stack S?" for successive heads.
  Moving from head P to head H costs one diff (P..H); answers found at P carry over to H for
  every stack that diff does not touch, so commits that touch one stack ask Git once.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tfops.changes import _normalise_changed, module_closure, module_sources
from tfops.gitdiff import TreeChanges
from tfops.models import Stack


class Diffs(Protocol):
    """The Git reads the tracker needs (`GitSource`)."""

    def changed_paths(self, old_sha: str | None, new_sha: str) -> frozenset[str] | None: ...

    def tree_changes(self, old_sha: str | None, new_sha: str) -> TreeChanges | None: ...


class ModuleIndex:
    """The local module calls of each folder of the checkout, read once per change of its files."""

    def __init__(self, repo_root: Path) -> None:
        self.root = Path(os.path.realpath(repo_root))
        self._sources: dict[str, frozenset[str]] = {}
        self._closures: dict[str, frozenset[str]] = {}
        self.version = 0  # moves whenever a closure may have changed

    def sources(self, directory: str) -> frozenset[str]:
        if directory not in self._sources:
            self._sources[directory] = module_sources(self.root, directory)
        return self._sources[directory]

    def modules_of(self, stack_path: str) -> frozenset[str]:
        """What :func:`tfops.stacks.local_module_dirs` answers, from the index."""
        if stack_path not in self._closures:
            self._closures[stack_path] = module_closure(stack_path, self.sources)
        return self._closures[stack_path]

    def advance(self, changes: TreeChanges | None) -> None:
        """The checkout moved by `changes` (None: unknown): forget what they may have changed."""
        if changes is None or not changes.contents_only:
            # Folders or symlinks came or went: a call's target may exist now, or not any more.
            self._forget_all()
            return
        stale = {posixpath.dirname(path) or "." for path in changes.paths if path.endswith(".tf")}
        changed = False
        for directory in stale & self._sources.keys():
            before = self._sources.pop(directory)
            changed = changed or self.sources(directory) != before
        if changed:
            self._closures.clear()
            self.version += 1

    def _forget_all(self) -> None:
        self._sources.clear()
        self._closures.clear()
        self.version += 1


class StackIndex:
    """The stacks a set of changed paths touches, found from the paths' parent folders."""

    def __init__(self, stacks: Sequence[Stack], modules: ModuleIndex) -> None:
        self.everywhere: set[str] = set()  # stacks at the repository root: every change touches them
        self.by_folder: dict[str, set[str]] = {}  # a stack's folder, or a module folder it calls
        self.by_file: dict[str, set[str]] = {}  # var and backend config files
        for stack in stacks:
            if stack.path == ".":
                self.everywhere.add(stack.name)
                continue
            for folder in (stack.path, *modules.modules_of(stack.path)):
                self.by_folder.setdefault(folder, set()).add(stack.name)
            for name in (*stack.var_files, *stack.backend_config):
                path = posixpath.normpath(posixpath.join(stack.path, name))
                self.by_file.setdefault(path, set()).add(stack.name)

    def touched(self, changed_paths: Iterable[str]) -> set[str]:
        names: set[str] = set()
        for path in (_normalise_changed(p) for p in changed_paths):
            if not path:
                continue
            names |= self.everywhere
            names |= self.by_file.get(path, set())
            folder = path
            while folder:
                names |= self.by_folder.get(folder, set())
                folder = posixpath.dirname(folder)
        return names


class ChangeTracker:
    """Does any commit after `since` up to the head touch a stack? Kept from one head to the next.

    An answer for (stack, since) found at head P still holds at head H when the diff P..H does
    not touch the stack (its inputs are the same at P and H). When it does touch it, an answer
    "unchanged since" becomes "changed" (the stack's code differs from P's, which was since's);
    an answer "changed" is asked again (P..H may be a revert). Unknown history counts as a change.
    """

    def __init__(self, repo_root: Path) -> None:
        self.modules = ModuleIndex(repo_root)
        self.head: str | None = None
        self._previous: str | None = None
        self._step: set[str] | None = None  # stacks touched by previous..head; None: unknown
        self._index: tuple[tuple[object, ...], int, StackIndex] | None = None
        self._answers: dict[tuple[str, str], bool] = {}
        self._touched_since: dict[str, set[str] | None] = {}  # at this head; None: unknown history

    def advance(self, git: Diffs, stacks: Sequence[Stack], head: str) -> None:
        """Move to `head`, where `stacks` were discovered (in the checkout at `head`)."""
        if head == self.head:
            # A tracker resumed at this head has its answers but no index yet: a question
            # about an older commit (a declined deploy's) needs it.
            self._stack_index(stacks)
            return
        changes = git.tree_changes(self.head, head) if self.head is not None else None
        self.modules.advance(changes)
        index = self._stack_index(stacks)
        step = None if changes is None else index.touched(git.changed_paths(self.head, head) or ())
        self._carry_answers(step)
        self._previous, self.head, self._step, self._touched_since = self.head, head, step, {}

    def resume(self, record: Any, stacks: Sequence[Stack]) -> None:
        """Start from what a previous process found at its last head (the poller's record of the
        stacks whose code there was their applied code), when the stacks are laid out as then."""
        if self.head is not None or not isinstance(record, dict) or not isinstance(record.get("head"), str):
            return
        groups = record.get("applied_at")
        if record.get("layout") != stacks_layout(stacks) or not isinstance(groups, dict):
            return
        self.head = record["head"]
        self._answers = {(name, since): False for since, names in groups.items() for name in names}

    def touch(self, git: Diffs, stack: Stack, since: str) -> bool:
        assert self.head is not None, "advance() to a head first"
        if since == self.head:
            return False
        if since == self._previous and self._step is not None:
            return stack.name in self._step
        key = (stack.name, since)
        if key not in self._answers:
            if since not in self._touched_since:
                changed = git.changed_paths(since, self.head)
                touched = None if changed is None else self._stack_index(None).touched(changed)
                self._touched_since[since] = touched
            touched = self._touched_since[since]
            self._answers[key] = touched is None or stack.name in touched
        return self._answers[key]

    def _carry_answers(self, step: set[str] | None) -> None:
        if step is None:
            self._answers = {}
            return
        self._answers = {
            key: answer or key[0] in step
            for key, answer in self._answers.items()
            if not (answer and key[0] in step)
        }

    def _stack_index(self, stacks: Sequence[Stack] | None) -> StackIndex:
        """The index of `stacks` (None: the ones of the last advance), rebuilt when they or a
        module call changed."""
        if stacks is None:
            assert self._index is not None
            return self._index[2]
        # What the index depends on, compared as plain tuples (cheaper than whole Stacks).
        shape = tuple((s.name, s.path, s.var_files, s.backend_config) for s in stacks)
        if self._index is None or self._index[0] != shape or self._index[1] != self.modules.version:
            self._index = (shape, self.modules.version, StackIndex(stacks, self.modules))
        return self._index[2]


def stacks_layout(stacks: Iterable[Stack]) -> str:
    """A digest of what decides which paths touch which stack (names, folders, var files)."""
    shape = sorted((s.name, s.path, list(s.var_files), list(s.backend_config)) for s in stacks)
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()
