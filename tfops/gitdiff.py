"""What differs between two commits, as `git diff --raw` tells it (`GitSource.tree_changes`)."""

from __future__ import annotations

from dataclasses import dataclass

# Modes of a regular file in `git diff --raw`: a change between them leaves the tree's shape alone.
_REGULAR_FILE_MODES = frozenset({"100644", "100755"})


@dataclass(frozen=True)
class TreeChanges:
    """What differs between two commits: the paths, and whether only file contents changed.

    `contents_only`: every change modifies a regular file that exists on both sides, so which
    folders, files and symlinks exist is the same (stack discovery would find the same stacks).
    """

    paths: frozenset[str]
    contents_only: bool


def parse_raw_diff(out: str) -> TreeChanges:
    """`git diff --raw -z`: ":old_mode new_mode old_id new_id status\\0path\\0" per change."""
    fields = out.split("\0")
    paths: set[str] = set()
    contents_only = True
    for header, path in zip(fields[0::2], fields[1::2], strict=False):
        if not header.startswith(":"):
            continue
        old_mode, new_mode, _old, _new, status = header[1:].split(" ", 4)
        paths.add(path)
        if status != "M" or old_mode not in _REGULAR_FILE_MODES or new_mode not in _REGULAR_FILE_MODES:
            contents_only = False
    return TreeChanges(paths=frozenset(paths), contents_only=contents_only)
