"""The Git side of tfops: clone, fetch, move to the remote head, diff, and per-run views.

Principle 1 lives here: tfops only ever plans a commit that it fetched itself from
the configured branch. A webhook or a person can ask for a fetch; neither can
name the code.

Each run gets its own `git worktree` at its commit, so a fetch during a run never
changes files under Terraform's feet. Mutating Git operations hold a file lock, so
the daemon and a one-shot CLI command on the same data dir do not trip over each
other's `index.lock`.

Every Git command goes through :func:`tfops.proc.run`, the door Terraform uses: an
allow-listed environment (tfops' own ``TFOPS_*`` secrets never reach git or ssh),
a timeout (``repo.fetch_timeout``) on every command, and its own session, so a
terminal's Ctrl-C reaches tfops and never kills a Git command under it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tfops import proc
from tfops.errors import ConfigError, GitError, GitFetchError, GitTimedOut, UnknownCommitError
from tfops.gitdiff import TreeChanges, parse_raw_diff

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)

# What Git may take from the daemon's environment beyond proc's allowlist (PATH, HOME,
# proxies, ssh agent, locale...): its TLS trust and which config files to read. Never
# GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE: those would point tfops' Git elsewhere.
GIT_PASSTHROUGH: tuple[str, ...] = (
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
)
# A Git command that should stop does so at SIGINT at once; the grace is for a slow disk.
_GIT_GRACE = 5.0
# Commit metadata in one `git log` call: NUL-separated, the raw message last.
_REVISION_FORMAT = "%H%x00%an%x00%ct%x00%B"


def scrub_url(text: str) -> str:
    """Remove `user:token@` from URLs in text: Git echoes remote URLs in its errors."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


@dataclass(frozen=True)
class Revision:
    sha: str
    subject: str
    author: str
    committed_at: datetime

    @property
    def short(self) -> str:
        return self.sha[:10]


@dataclass(frozen=True)
class FetchResult:
    head: Revision
    previous_sha: str | None
    forced: bool  # the new head does not descend from the previous one (force-push)
    # Fetches of one GitSource in the order they updated the remote ref: of two results handed
    # to different threads, the higher one is the newer head.
    generation: int = 0

    @property
    def moved(self) -> bool:
        return self.head.sha != self.previous_sha


# Diffs kept per GitSource: enough for the pairs of a few heads, small enough to never matter.
_DIFF_CACHE_SIZE = 256


class GitSource:
    """One repository and branch, checked out under `checkout_dir`.

    `env`: what tfops sets for Git (credentials helpers); `inherit`: the daemon's
    environment, of which Git gets only the allowlist. Reads (rev-parse, log, diff)
    are separate processes and need no lock; writes take the thread lock and a flock.
    """

    def __init__(
        self,
        url: str,
        branch: str,
        checkout_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        inherit: Mapping[str, str] | None = None,
        fetch_timeout: float = 120.0,
    ) -> None:
        self.url = url
        self.branch = branch
        self.checkout_dir = Path(checkout_dir)
        self.views_dir = self.checkout_dir.parent / "views"
        self._own_views = self.views_dir / str(os.getpid())
        self._view_users: dict[str, int] = {}
        self._env = proc.build_env(
            inherit=os.environ if inherit is None else inherit,
            passthrough=GIT_PASSTHROUGH,
            # English messages (errors are matched below), and never a prompt.
            extra={**(env or {}), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"},
        )
        self._fetch_timeout = fetch_timeout
        self._thread_lock = threading.RLock()
        self._fetches = 0  # FetchResult.generation, counted under the write lock
        # Two commits' diff never changes: the poller, discovery and status ask for the same pairs.
        self._diffs: OrderedDict[tuple[str, str], TreeChanges | None] = OrderedDict()
        self._diffs_lock = threading.Lock()
        # Set by close(): Git commands still running are stopped, and no new one starts.
        self._closed = proc.Cancel()

    @property
    def remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def close(self) -> None:
        """Stop Git commands still running (SIGINT, then SIGKILL) and refuse new ones."""
        self._closed.cancel()

    # -- clone and fetch ------------------------------------------------------

    def ensure_clone(self) -> None:
        """Clone on first start; afterwards only check the clone is ours."""
        with self._mutating():
            if (self.checkout_dir / ".git").exists():
                self._check_origin()
                return
            self.checkout_dir.parent.mkdir(parents=True, exist_ok=True)
            partial = self.checkout_dir.with_name(self.checkout_dir.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            result = self._run(
                "clone", "--no-checkout", "--branch", self.branch, "--", self.url, str(partial),
                cwd=self.checkout_dir.parent, timeout=self._fetch_timeout, check=False,
            )  # fmt: skip
            if not result.ok:
                shutil.rmtree(partial, ignore_errors=True)
                raise self._fetch_error("clone", result)
            # Cloning into a side folder and renaming means a crash mid-clone never
            # leaves a half repository that later looks valid.
            partial.rename(self.checkout_dir)
            head = self._ref_sha(self.remote_ref)
            if head is None:
                raise GitFetchError(f"clone of {scrub_url(self.url)} has no {self.remote_ref}")
            self._during_fetch("clone", lambda: self._checkout(head))

    def has_clone(self) -> bool:
        return (self.checkout_dir / ".git").exists()

    def fetch(self, *, checkout: bool = True) -> FetchResult:
        """Fetch the branch and move the checkout to the remote head.

        `checkout=False` only learns the head (the remote ref moves, the checkout stays): for
        confirming the head while a poll may be reading the checkout of the head it fetched.
        """
        self._require_clone()
        with self._mutating():
            previous = self._ref_sha(self.remote_ref)
            refspec = f"+refs/heads/{self.branch}:{self.remote_ref}"
            result = self._run(
                "fetch", "--prune", "origin", refspec, timeout=self._fetch_timeout, check=False
            )
            if not result.ok:
                raise self._fetch_error("fetch", result)
            return self._during_fetch("fetch", lambda: self._settle_fetch(previous, checkout))

    def _settle_fetch(self, previous: str | None, checkout: bool) -> FetchResult:
        head = self.revision(self.remote_ref)
        forced = previous is not None and previous != head.sha and not self.is_ancestor(previous, head.sha)
        if forced:
            log.warning(
                "branch %s was rewritten: %s is not an ancestor of %s", self.branch, previous, head.sha
            )
        if checkout:
            self._checkout(head.sha)
            self._drop_unused_views()
        self._fetches += 1
        return FetchResult(head=head, previous_sha=previous, forced=forced, generation=self._fetches)

    def head(self) -> Revision | None:
        sha = self._ref_sha(self.remote_ref)
        return self.revision(sha) if sha else None

    # -- questions about commits ---------------------------------------------

    def revision(self, rev: str) -> Revision:
        sha = self._ref_sha(rev)
        if sha is None:
            raise UnknownCommitError(f"{rev!r} is not a commit in the checkout")
        out = self._run("log", "-1", "--no-walk", f"--format={_REVISION_FORMAT}", sha).stdout
        full, author, committed, message = out.split("\0", 3)
        return Revision(
            sha=full,
            subject=message.split("\n", 1)[0],
            author=author,
            committed_at=datetime.fromtimestamp(int(committed), tz=UTC),
        )

    def is_ancestor(self, older: str, newer: str) -> bool:
        # 0: yes, 1: no; anything else (an unknown commit) counts as no.
        return self._run("merge-base", "--is-ancestor", older, newer, check=False).exit_code == 0

    def commits_between(self, older: str, newer: str, path: str | None = None) -> int:
        """How many commits `newer` has that `older` has not (touching `path`, when given)."""
        args = ["rev-list", "--count", f"{older}..{newer}"]
        if path:
            args += ["--", path]
        return int(self._run(*args).stdout.strip() or 0)

    def is_on_branch(self, sha: str) -> bool:
        """True when `sha` is the fetched head or one of its ancestors."""
        head = self._ref_sha(self.remote_ref)
        return head is not None and _is_full_sha(sha) and self.is_ancestor(sha, head)

    def changed_paths(self, old_sha: str | None, new_sha: str) -> frozenset[str] | None:
        """Paths that differ between two commits; None means "unknown: assume everything".

        Renames are listed as a delete and an add, so both the old and the new
        location count as changed.
        """
        changes = self.tree_changes(old_sha, new_sha)
        return None if changes is None else changes.paths

    def tree_changes(self, old_sha: str | None, new_sha: str) -> TreeChanges | None:
        """What differs between two commits (one `git diff` per pair, then remembered); None:
        unknown (a commit is gone), so every stack counts as touched."""
        if old_sha is None:
            return None
        key = (old_sha, new_sha)
        with self._diffs_lock:
            if key in self._diffs:
                self._diffs.move_to_end(key)
                return self._diffs[key]
        args = ("diff", "--raw", "--no-renames", "--no-abbrev", "-z", old_sha, new_sha)
        result = self._run(*args, check=False)
        # The old commit is gone (rewritten history, gc): we cannot tell, so every stack is
        # considered touched rather than silently skipped. Not remembered: a fetch may bring it.
        changes = parse_raw_diff(result.stdout) if result.ok else None
        if changes is not None and _is_full_sha(old_sha) and _is_full_sha(new_sha):
            with self._diffs_lock:
                self._diffs[key] = changes
                while len(self._diffs) > _DIFF_CACHE_SIZE:
                    self._diffs.popitem(last=False)
        return changes

    # -- per-run views -------------------------------------------------------

    @contextmanager
    def view(self, sha: str) -> Iterator[Path]:
        """An immutable working tree of `sha` for the duration of a run.

        Runs at the same commit share one view: each run writes only into its own
        stack's directory (backend file, lock file), and runs of one stack never
        overlap. The view of the current head is kept for the next run; others are
        removed when their last run ends. Views live under this process's pid, so a
        one-shot CLI and the daemon never remove each other's.
        """
        if not self.is_on_branch(sha):
            raise UnknownCommitError(f"commit {sha!r} is not on the fetched branch {self.branch!r}")
        path = self._own_views / sha
        with self._mutating():
            if self._view_users.get(sha, 0) == 0 and not path.exists():
                self._own_views.mkdir(parents=True, exist_ok=True)
                self._run("worktree", "add", "--detach", "--force", str(path), sha)
            self._view_users[sha] = self._view_users.get(sha, 0) + 1
        try:
            yield path
        finally:
            with self._mutating():
                self._view_users[sha] -= 1
                self._drop_unused_views()

    def prune_views(self) -> None:
        """Remove views left behind by processes that are gone (a crash, a kill -9)."""
        self._require_clone()
        with self._mutating():
            if self.views_dir.exists():
                for owner in self.views_dir.iterdir():
                    if owner == self._own_views or _process_alive(owner.name):
                        continue
                    for leftover in owner.iterdir():
                        self._remove_view(leftover)
                    shutil.rmtree(owner, ignore_errors=True)
            self._run("worktree", "prune")

    def _drop_unused_views(self) -> None:
        head = self._ref_sha(self.remote_ref)
        for sha, users in list(self._view_users.items()):
            if users == 0 and sha != head:
                self._remove_view(self._own_views / sha)
                del self._view_users[sha]

    # -- internals -----------------------------------------------------------

    def _run(
        self, *args: str, cwd: Path | None = None, timeout: float | None = None, check: bool = True
    ) -> proc.ProcResult:
        """One Git command through proc.run; with `check`, a failure raises GitError (GitTimedOut)."""
        if self._closed.is_cancelled:
            raise GitError(f"`git {args[0]}` refused: the Git source is closed (tfops is stopping)")
        result = proc.run(
            ["git", *args],
            cwd=cwd or self.checkout_dir,
            env=self._env,
            timeout=timeout or self._fetch_timeout,
            cancel=self._closed,
            grace=_GIT_GRACE,
            ok_codes=(0,),
            capture_stdout=True,
            redact=scrub_url,
        )
        if check and not result.ok:
            raise _git_error(result)
        return result

    def _remove_view(self, path: Path) -> None:
        if not path.exists():
            return
        if not self._run("worktree", "remove", "--force", "--force", str(path), check=False).ok:
            # Not registered as a worktree (crash between mkdir and add): plain delete.
            shutil.rmtree(path, ignore_errors=True)
            self._run("worktree", "prune")

    def _checkout(self, sha: str) -> None:
        self._run("checkout", "--detach", "--force", sha)
        self._run("clean", "-ffdx")

    def _check_origin(self) -> None:
        result = self._run("config", "--get", "remote.origin.url", check=False)
        if result.exit_code == 1:
            raise ConfigError(f"{self.checkout_dir} is a Git repository without an 'origin' remote")
        if not result.ok:
            raise _git_error(result)
        configured = result.stdout.strip()
        if _normalise_url(configured) != _normalise_url(self.url):
            raise ConfigError(
                f"checkout {self.checkout_dir} tracks {scrub_url(configured)}, not {scrub_url(self.url)}",
                hint="point repo.checkout_dir at an empty folder, or remove the old checkout",
            )

    def _ref_sha(self, ref: str) -> str | None:
        self._require_clone()
        result = self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
        )
        if result.exit_code == 1:
            return None  # no such ref or commit
        if not result.ok:
            raise _git_error(result)
        return result.stdout.strip()

    def _require_clone(self) -> None:
        if not (self.checkout_dir / ".git").exists():
            raise GitFetchError(
                f"no clone at {self.checkout_dir} yet", hint="the first fetch has not succeeded"
            )

    def _during_fetch(self, action: str, step: Callable[[], _T]) -> _T:
        """A local step of a clone or fetch (checkout, ref reads) failing fails the fetch: the
        poller retries fetches, and reports them."""
        try:
            return step()
        except GitError as exc:
            raise GitFetchError(f"{action} of {scrub_url(self.url)}: {exc}") from exc

    def _fetch_error(self, action: str, result: proc.ProcResult) -> GitFetchError:
        stderr = result.tail.strip()  # stderr only (stdout is captured), already scrubbed
        if ("Remote branch" in stderr and "not found" in stderr) or "couldn't find remote ref" in stderr:
            return GitFetchError(
                f"{action} of {scrub_url(self.url)}: branch {self.branch!r} does not exist",
                hint="check repo.branch in the configuration",
            )
        if result.outcome is proc.Outcome.TIMED_OUT:
            return GitFetchError(f"{action} of {scrub_url(self.url)} timed out after {result.duration:.0f}s")
        return GitFetchError(f"{action} of {scrub_url(self.url)} failed: {stderr or result.describe()}")

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        """Serialise Git writes within this process (thread lock) and across processes (flock)."""
        self.checkout_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.checkout_dir.parent / (self.checkout_dir.name + ".lock")
        with self._thread_lock, open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _git_error(result: proc.ProcResult) -> GitError:
    if result.outcome is proc.Outcome.TIMED_OUT:
        return GitTimedOut(result.describe())
    return GitError(result.describe())


def _process_alive(name: str) -> bool:
    if not name.isdigit():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _is_full_sha(sha: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", sha))


def _normalise_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    if "://" not in url and ":" not in url.split("/")[0]:
        # A local path: compare resolved paths so ./infra and /abs/infra match.
        return str(Path(url).expanduser().resolve())
    return url


def fetch_with_backoff(
    source: GitSource,
    *,
    attempts: int = 3,
    first_delay: float = 1.0,
    sleep=time.sleep,
) -> FetchResult:
    """Fetch, retrying a transient failure a few times with exponential backoff."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return source.fetch()
        except GitFetchError as exc:
            if attempt == attempts:
                raise
            log.warning("fetch failed (attempt %d/%d), retrying in %.1fs: %s", attempt, attempts, delay, exc)
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def git_env(
    *, ssh_key_file: Path | None, askpass: Path | None, username: str | None, token: str | None
) -> dict:
    """Environment for Git commands: never put credentials in a URL or on a command line."""
    env: dict[str, str] = {}
    if ssh_key_file is not None:
        env["GIT_SSH_COMMAND"] = f"ssh -i {ssh_key_file} -o IdentitiesOnly=yes -o BatchMode=yes"
    if token is not None and askpass is not None:
        env["GIT_ASKPASS"] = str(askpass)
        env["TFOPS_GIT_USERNAME"] = username or "x-access-token"
        env["TFOPS_GIT_PASSWORD"] = token
    return env


def write_askpass(path: Path) -> Path:
    """A static askpass helper: Git asks it, it answers from the environment."""
    script = (
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  Username*) printf "%s\\n" "$TFOPS_GIT_USERNAME" ;;\n'
        '  *) printf "%s\\n" "$TFOPS_GIT_PASSWORD" ;;\n'
        "esac\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != script:
        path.write_text(script)
    os.chmod(path, 0o700)
    return path
