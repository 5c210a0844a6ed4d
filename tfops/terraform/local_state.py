"""Which stacks keep their state locally, and the words that refuse them when daemons share a store.

A stack without a `backend` block in its top-level `.tf` files keeps its state locally: the runner
writes `_tfops_backend.tf` into the run's view, pointing a local backend at the stack's folder under
this daemon's data dir. Several daemons (tfops.ha) each have a data dir of their own, so such a
stack would have one state per instance: `tfops serve` refuses to start with one (unless
`ha.local_state_instance` pins them, tfops.ha.pinning), and a run of one is refused on every
instance but the pinned one. One test of "local state" for all of them: `keeps_state_locally`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

BACKEND_FILE = "_tfops_backend.tf"  # what the runner writes into a run's view: never the stack's own
BACKEND_BLOCK = re.compile(r'^\s*backend\s+"', re.MULTILINE)
# Several daemons: the option that pins the stacks with local state to one instance (tfops.config.ha).
LOCAL_STATE_OPTION = "ha.local_state_instance"


def top_level_code(directory: Path) -> str:
    """The stack's own top-level `.tf` files, in name order (not the backend file tfops wrote)."""
    parts = []
    for path in sorted(directory.glob("*.tf")):
        if path.name != BACKEND_FILE:
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def without_backend(code: str) -> bool:
    """Whether `code` (a stack's top-level `.tf` files) declares no backend: its state is local."""
    return not BACKEND_BLOCK.search(code)


def keeps_state_locally(directory: Path) -> bool:
    """Whether the stack in `directory` keeps its state locally (no `backend` block)."""
    return without_backend(top_level_code(directory))


def local_state_refusal(stacks: Sequence[str]) -> tuple[str, str]:
    """The message and hint that refuse stacks with local state when several daemons share the
    store: at `tfops serve`'s start, in `check-config` and at a run."""
    names = ", ".join(stacks)
    one = len(stacks) == 1
    message = (
        f"stack{'' if one else 's'} {names} keep{'s its' if one else ' their'} state locally (no backend "
        "block), and several tfops daemons share this store: each instance would have a state of its own"
    )
    hint = (
        f"give {'it' if one else 'each'} a remote backend with locking (s3, pg, azurerm, gcs...), or run "
        f"the stacks with local state on one instance only: set {LOCAL_STATE_OPTION} to its instance id; "
        'see docs/ha.md, "State must be remote"'
    )
    return message, hint
