"""Commit subjects, authors and "N commits behind" for the status page, from the daemon's clone.

Each answer is remembered (commits never change; a count between two given commits never
changes either), so a page asks Git only about commits it has not shown before: a new head
costs one `git log` and one `git rev-list` per stack on the page once, then nothing. A lookup
that fails (a commit gone after a force-push, Git stopping) shows the page without it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tfops.errors import TfopsError

log = logging.getLogger(__name__)

CACHE_SIZE = 4096


@dataclass(frozen=True)
class CommitView:
    sha: str
    subject: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:8]


class CommitSource(Protocol):
    """What the lookup reads: tfops.gitsource.GitSource has both."""

    def revision(self, rev: str) -> object: ...

    def commits_between(self, older: str, newer: str, path: str | None = None) -> int: ...


class CommitLookup:
    """Cached commit facts; every method answers None when Git cannot."""

    def __init__(self, source: CommitSource | None) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, ...], object] = OrderedDict()

    def commit(self, sha: str | None) -> CommitView | None:
        if not sha or self._source is None:
            return None
        source = self._source

        def read() -> CommitView:
            revision = source.revision(sha)
            return CommitView(
                sha=str(getattr(revision, "sha", sha)),
                subject=str(getattr(revision, "subject", "")),
                author=str(getattr(revision, "author", "")),
            )

        found = self._cached(("commit", sha), read)
        return found if isinstance(found, CommitView) else None

    def behind(self, applied: str | None, head: str | None, path: str) -> int | None:
        """Commits on the branch since `applied` that touch `path`; None when unknown."""
        if not applied or not head or self._source is None:
            return None
        if applied == head:
            return 0
        source = self._source
        found = self._cached(
            ("behind", applied, head, path), lambda: source.commits_between(applied, head, path)
        )
        return found if isinstance(found, int) else None

    def _cached(self, key: tuple[str, ...], read: Callable[[], object]) -> object:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            value = read()
        except (TfopsError, OSError, ValueError) as exc:
            log.debug("status page: no %s for %s: %s", key[0], key[1:], exc)
            return None  # not remembered: the next page asks again
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return value
