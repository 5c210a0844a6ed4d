"""Who is an approver: Slack user ids listed as they are, user groups resolved through Slack.

Group members come from `usergroups.users.list` and are cached for `ttl` seconds, so a burst of
clicks costs one call per group. When Slack cannot be asked and nothing fresh is cached, the answer
is "unknown" (None): the desk refuses rather than guesses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

# Answers that mean the configuration is wrong, not that Slack is unavailable.
MISCONFIGURED = frozenset({"no_such_subteam", "subteam_not_found", "missing_scope", "not_allowed_token_type"})


class SlackDirectory:
    def __init__(self, client: WebClient, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def is_approver(self, user_id: str, approvers: Sequence[str]) -> bool | None:
        if user_id in approvers:
            return True
        unknown = False
        for group in (entry for entry in approvers if entry.startswith("S")):
            members = self.members(group)
            if members is None:
                unknown = True
            elif user_id in members:
                return True
        return None if unknown else False

    def members(self, group: str) -> frozenset[str] | None:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            answer = self.client.usergroups_users_list(usergroup=group)
            members = frozenset(str(user) for user in answer.get("users") or ())
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error not in MISCONFIGURED:
                log.warning("Slack: members of user group %s unknown for now: %s", group, error)
                return None
            # No retry fixes these: the group counts as empty (and is cached) until the config is.
            log.error("Slack: user group %s cannot be resolved (%s); it approves nobody", group, error)
            members = frozenset()
        except OSError as exc:
            log.warning("Slack: members of user group %s unknown: %s", group, type(exc).__name__)
            return None
        with self._lock:
            self._cache[group] = (now, members)
        return members
