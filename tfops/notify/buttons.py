"""The Approve and Reject buttons of an approval request, and the value they carry back from Slack."""

from __future__ import annotations

import re
from typing import Any

from tfops.models import Run
from tfops.notify.mrkdwn import CONFIRM_TEXT, STACK_CHARS, plain, plain_text

APPROVE_ACTION_ID = "tfops_approve"
REJECT_ACTION_ID = "tfops_reject"

_ACTION_VALUE_PREFIX = "tfops1"
_ACTION_VALUE = re.compile(
    re.escape(_ACTION_VALUE_PREFIX) + r":([1-9][0-9]{0,18}):([0-9a-f]{40}|[0-9a-f]{64}):([0-9a-f]{64})"
)
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
_PLAN_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_RUN_ID = 2**63 - 1


def action_value(run_id: int, commit_sha: str, plan_sha256: str) -> str:
    """The value an Approve/Reject button carries: the run and the binding it was shown with."""
    if isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 < run_id <= _MAX_RUN_ID:
        raise ValueError(f"run id must be a positive 64-bit integer, not {run_id!r}")
    if not isinstance(commit_sha, str) or not _COMMIT_SHA.fullmatch(commit_sha):
        raise ValueError("commit sha must be a full lowercase hex object name (40 or 64 characters)")
    if not isinstance(plan_sha256, str) or not _PLAN_SHA256.fullmatch(plan_sha256):
        raise ValueError("plan sha256 must be 64 lowercase hex characters")
    return f"{_ACTION_VALUE_PREFIX}:{run_id}:{commit_sha}:{plan_sha256}"


def parse_action_value(value: str) -> tuple[int, str, str]:
    """(run_id, commit_sha, plan_sha256) from a button value; ValueError for anything else.

    The value comes back from Slack, so it is untrusted: only the exact form action_value writes
    is accepted, and the caller still checks it against the stored run.
    """
    match = _ACTION_VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not a tfops action value")
    run_id = int(match.group(1))
    if run_id > _MAX_RUN_ID:
        raise ValueError("not a tfops action value")
    return run_id, match.group(2), match.group(3)


def approval_buttons(run: Run) -> dict[str, Any]:
    if not run.commit_sha or not run.plan_sha256:
        raise ValueError("an approval request needs the run's commit sha and plan sha256")
    value = action_value(run.id, run.commit_sha, run.plan_sha256)
    confirm_text = plain(
        f"Apply run #{run.id} to {plain(run.stack, STACK_CHARS)} at commit {run.commit_sha[:10]}? "
        f"tfops applies exactly the saved plan {run.plan_sha256[:12]}, or nothing if the branch has moved.",
        CONFIRM_TEXT,
    )
    return {
        "type": "actions",
        "block_id": f"tfops_run_{run.id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": plain_text("Approve"),
                "style": "primary",
                "value": value,
                "confirm": {
                    "title": plain_text("Apply this plan?"),
                    "text": plain_text(confirm_text),
                    "confirm": plain_text("Approve and apply"),
                    "deny": plain_text("Cancel"),
                    "style": "primary",
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION_ID,
                "text": plain_text("Reject"),
                "style": "danger",
                "value": value,
            },
        ],
    }
