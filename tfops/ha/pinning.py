"""Stacks with local state among several daemons: refused at start, or pinned to one instance.

Each instance has a data directory of its own, so a stack without a `backend` block would have
one state per instance (tfops.terraform.local_state says which stacks keep their state locally).
Without `ha.local_state_instance`, `tfops serve` refuses to start while its checkout holds such a
stack (`refuse_local_state`), and a run of one that arrives later with a commit fails at the
runner with the same words. With it, the named instance runs them and no other instance takes
their runs into its queue (`Pinning.takes`, the queue's `keeps`): they wait in the store for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tfops.errors import ConfigError, TfopsError
from tfops.models import Stack
from tfops.stacks import discover
from tfops.terraform.local_state import keeps_state_locally, local_state_refusal

if TYPE_CHECKING:
    from tfops.config import Settings

log = logging.getLogger(__name__)


class LocalStateRefused(ConfigError):
    """Several daemons share the store, and the checkout has stacks with local state (no pin)."""


def runs_here(local_state: bool, pinned_to: str | None, me: str) -> bool:
    """Whether instance `me` may run a stack's runs: every stack with remote state, and one with
    local state unless another instance is the one `ha.local_state_instance` names (with no pin,
    any instance takes it and the runner refuses it, saying why)."""
    return not local_state or pinned_to is None or pinned_to == me


def local_state_stacks(root: Path, stacks: Iterable[Stack]) -> list[str]:
    """The names of the `stacks` (found in the checkout at `root`) that keep their state locally."""
    return sorted(stack.name for stack in stacks if keeps_state_locally(root / stack.path))


def refuse_local_state(root: Path, stacks: Iterable[Stack]) -> None:
    """`tfops serve` with several daemons and no pin: raise `LocalStateRefused` naming the stacks
    with local state in the checkout at `root`, and both ways out."""
    found = local_state_stacks(root, stacks)
    if found:
        message, hint = local_state_refusal(found)
        raise LocalStateRefused(message, hint=hint)


def refused_at_start(settings: Settings) -> bool:
    """Whether stacks with local state stop `tfops serve` (several daemons and no pin)."""
    return not settings.store_url.startswith("sqlite") and settings.ha.local_state_instance is None


def refuse_at_start(settings: Settings, ensure_clone: Callable[[], object]) -> None:
    """`tfops serve`, before it resumes or serves anything: with several daemons and no pin, refuse
    to start while the checkout (cloned now if it is not there yet) has stacks with local state.
    Without a checkout (the remote does not answer) nothing is known: the runs refuse them later."""
    if not refused_at_start(settings):
        return
    try:
        ensure_clone()
    except TfopsError as exc:
        log.warning("cannot look for stacks with local state before starting: %s", exc)
        return
    refuse_in_checkout(settings)


def refuse_in_checkout(settings: Settings) -> None:
    """`tfops serve` and `tfops check-config`: raise `LocalStateRefused` when several daemons and
    no pin meet stacks with local state in the checkout (as of its last fetch; none without one)."""
    root = Path(settings.checkout_dir)
    if not refused_at_start(settings) or not (root / ".git").exists():
        return
    refuse_local_state(root, discover(root, settings.stacks, settings.defaults).stacks)


class Pinning:
    """This instance's filter on runs (several daemons, a pin set): the stacks with local state run
    only on the pinned instance. Reads the stack's top-level files in the checkout at each look:
    a commit may add or remove a backend block."""

    def __init__(
        self, root: Path, stacks: Callable[[], Mapping[str, Stack]], *, pinned_to: str | None, me: str
    ) -> None:
        self.root = root
        self.stacks = stacks
        self.pinned_to = pinned_to
        self.me = me

    def takes(self, stack_name: str) -> bool:
        """Whether this instance takes the runs of `stack_name` into its queue."""
        if self.pinned_to is None or self.pinned_to == self.me:
            return True  # nothing to read: every stack runs here
        stack = self.stacks().get(stack_name)
        if stack is None:
            return True  # not at the head: the worker refuses it as it does on one VM
        local = keeps_state_locally(self.root / stack.path)
        if local:
            log.debug("run of %s left to instance %s: local state", stack_name, self.pinned_to)
        return runs_here(local, self.pinned_to, self.me)
