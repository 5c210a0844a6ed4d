"""Turn Terraform's error text into typed errors (pure).

Terraform reports failures as human text on stderr. The phrases matched here were
checked against real output of Terraform 1.0.3 and 1.11 (tests/fixtures/errors, made
by scripts/make_error_fixtures.py); OpenTofu keeps the same titles. The first rule that
matches wins, most specific first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from tfops.errors import (
    ConfigurationError,
    InitRequiredError,
    ProviderError,
    StalePlanError,
    StateLockError,
    TerraformError,
)

_ERROR_TITLE = re.compile(r"^\s*(?:│\s*)?Error: (.+)$", re.MULTILINE)
_LOCK_INFO = "Lock Info:"
_LOCK_ID = re.compile(r"^\s*(?:│\s*)?ID:\s+(\S+)", re.MULTILINE)
# The other fields of the "Lock Info:" block: who holds the lock, for what, since when.
_LOCK_FIELD = re.compile(r"^\s*(?:│\s*)?(Who|Operation|Created):[ \t]*(\S.*?)\s*$", re.MULTILINE)

_STALE = (
    "Saved plan is stale",
    # 1.11 (and later 1.x): the plan was made from a state of another lineage.
    "Saved plan does not match the given state",
)
_LOCK = ("Error acquiring the state lock", "Error locking state")
# The provider is installed but its process does not start or speak the protocol. Terraform
# 1.0.3 wraps this in "Could not load plugin ... run terraform init", but a re-init installs
# the same broken binary again, so this is the provider's failure.
_PROVIDER_START = (
    "Unrecognized remote plugin message",
    "plugin exited before we could connect",
)
_INIT = (
    "terraform init",
    "tofu init",
    "Module not installed",
    "Backend initialization required",
    "Inconsistent dependency lock file",
    "Required plugins are not installed",
    "missing or corrupted provider plugins",
    "Could not load plugin",
    "Module source has changed",
    "Module version requirements have changed",
)
_PROVIDER = (
    "Plugin did not respond",
    "rpc error:",
    "The plugin encountered an error",
    "failed to instantiate provider",
    "Failed to load plugin schemas",
    "Invalid provider configuration",
    "provider produced an unexpected",
    "Provider produced inconsistent",
)
# "  with <address>," names the object a diagnostic is about. When that object is a
# resource, a data source or a provider configuration, the diagnostic came from the
# provider (validation, configure, create, read, update, delete).
_WITH_OBJECT = re.compile(r"^(?:│)?[ \t]{2,}with (\S.*),$", re.MULTILINE)
_MODULE_PREFIX = re.compile(r"^(?:module\.[A-Za-z0-9_-]+(?:\[[^\]]*\])?\.)+")
# A managed resource (<type>.<name>), a data source or a provider; not var., local., output.
# or check. objects, whose diagnostics are Terraform's own.
_PROVIDER_OBJECT = re.compile(
    r"^(?:provider\[|data\.|(?!(?:var|local|output|check|module)\.)[a-z][a-z0-9_-]*\.)"
)
_IN_FILE = re.compile(r"^\s*(?:│\s*)?on \S+\.tf(?:\.json)? line \d+", re.MULTILINE)


def classify(output: str, *, argv: Sequence[str], exit_code: int | None) -> TerraformError:
    """The most specific TerraformError for a failed command's output."""
    title = _describe_titles(output)
    facts = _Facts(tuple(argv), exit_code, output)
    if _contains(output, _STALE):
        return facts.error(StalePlanError, f"Terraform refused the saved plan: {title}")
    if _contains(output, _LOCK):
        return _lock_error(facts, title)
    if _contains(output, _PROVIDER_START):
        return facts.error(ProviderError, f"the provider could not be started: {title}")
    # Advice to run `terraform init` printed by `init` itself is about init's own flags
    # (-reconfigure, -migrate-state): running init again would fail the same way.
    if _contains(output, _INIT) and subcommand(argv) != "init":
        return facts.error(InitRequiredError, f"the working directory needs init: {title}")
    if _contains(output, _PROVIDER) or _names_provider_object(output):
        return facts.error(ProviderError, f"a provider failed: {title}")
    if _IN_FILE.search(output):
        return facts.error(ConfigurationError, f"invalid Terraform configuration: {title}")
    command = " ".join(["terraform", *filter(None, [subcommand(argv)])])
    return facts.error(TerraformError, f"{command} failed: {title}")


_E = TypeVar("_E", bound=TerraformError)


@dataclass(frozen=True)
class _Facts:
    """What every classified error carries: the command, its exit code, its output."""

    argv: tuple[str, ...]
    exit_code: int | None
    output: str

    def error(self, kind: type[_E], message: str) -> _E:
        return kind(message, argv=self.argv, exit_code=self.exit_code, output_tail=self.output)


def lock_id_in(output: str) -> str | None:
    """The lock's ID from Terraform's "Lock Info:" block, if it printed one."""
    start = output.find(_LOCK_INFO)
    match = _LOCK_ID.search(output, start if start >= 0 else 0)
    return match.group(1) if match else None


def lock_holder_in(output: str) -> str | None:
    """Who holds the lock, for which operation and since when, from the "Lock Info:" block:
    "alice@laptop (apply, since 2026-11-28 10:42:00 +0000 UTC)"."""
    start = output.find(_LOCK_INFO)
    if start < 0:
        return None
    fields = dict(_LOCK_FIELD.findall(output, start))
    who = fields.get("Who")
    if not who:
        return None
    details = [fields.get("Operation", "").removeprefix("OperationType").lower()]
    if fields.get("Created"):
        details.append(f"since {fields['Created']}")
    return f"{who} ({', '.join(filter(None, details))})" if any(details) else who


def subcommand(argv: Sequence[str]) -> str | None:
    """`plan` for ["terraform", "-chdir=x", "plan", ...]: the first word after global options."""
    return next((arg for arg in list(argv)[1:] if not arg.startswith("-")), None)


def _lock_error(facts: _Facts, title: str) -> StateLockError:
    lock_id = lock_id_in(facts.output)
    holder = lock_holder_in(facts.output) or "another process"
    if lock_id is None:
        return facts.error(StateLockError, f"the state is locked by {holder}: {title}")
    return StateLockError(
        f"the state is locked by {holder}, lock ID {lock_id}: {title}",
        lock_id=lock_id,
        hint=StateLockError.hint.replace("LOCK_ID", lock_id),
        argv=facts.argv,
        exit_code=facts.exit_code,
        output_tail=facts.output,
    )


def _describe_titles(output: str) -> str:
    titles = [match.strip() for match in _ERROR_TITLE.findall(output)]
    if not titles:
        return "see the output"
    more = len(titles) - 1
    return titles[0] + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def _names_provider_object(output: str) -> bool:
    for address in _WITH_OBJECT.findall(output):
        if _PROVIDER_OBJECT.match(_MODULE_PREFIX.sub("", address)):
            return True
    return False


def _contains(text: str, phrases: tuple[str, ...]) -> bool:
    return _phrase_pattern(phrases).search(_flatten(text)) is not None


def _flatten(text: str) -> str:
    # Terraform wraps detail text at 78 columns, so a phrase may span two lines.
    return " ".join(text.replace("│", " ").split())


@functools.cache
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words ("terraform init" is not "Terraform initialized"), any case: Terraform
    # capitalises a message when it is a title, not when it is quoted inside another.
    alternatives = "|".join(re.escape(phrase) for phrase in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
