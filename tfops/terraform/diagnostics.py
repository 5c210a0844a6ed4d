"""Turn Terraform's error text into typed errors (pure).

Terraform reports failures as human text on stderr. The phrases matched here are
stable across Terraform 1.x and OpenTofu; the first rule that matches wins, most
specific first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tfops.errors import (
    ConfigurationError,
    InitRequiredError,
    ProviderError,
    StalePlanError,
    StateLockError,
    TerraformError,
)

_LOCK_ID = re.compile(r"^\s*ID:\s+(\S+)", re.MULTILINE)
_ERROR_TITLE = re.compile(r"^\s*(?:│\s*)?Error: (.+)$", re.MULTILINE)

_STALE = ("Saved plan is stale",)
_LOCK = ("Error acquiring the state lock", "Error locking state")
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
    "Failed to instantiate provider",
    "Invalid provider configuration",
    "provider produced an unexpected",
    "Provider produced inconsistent",
)
# "with <address>," is how Terraform introduces an error raised while a provider
# worked on a resource (create, read, update, delete).
_WITH_RESOURCE = re.compile(r"^\s*(?:│\s*)?with [a-z0-9_.\[\]\"-]+,", re.MULTILINE | re.IGNORECASE)
_IN_FILE = re.compile(r"^\s*(?:│\s*)?on \S+\.tf(?:\.json)? line \d+", re.MULTILINE)


def classify(output: str, *, argv: Sequence[str], exit_code: int | None) -> TerraformError:
    """The most specific TerraformError for a failed command's output."""
    title = first_error_title(output)
    kwargs = {"argv": argv, "exit_code": exit_code, "output_tail": output}
    if _contains(output, _STALE):
        return StalePlanError("the saved plan is stale: state changed after it was made", **kwargs)
    if _contains(output, _LOCK):
        match = _LOCK_ID.search(output)
        return StateLockError(
            "the state is locked by another process", lock_id=match.group(1) if match else None, **kwargs
        )
    if _contains(output, _INIT):
        return InitRequiredError(f"the working directory needs init: {title or 'see output'}", **kwargs)
    if _contains(output, _PROVIDER) or _WITH_RESOURCE.search(output):
        return ProviderError(f"a provider failed: {title or 'see output'}", **kwargs)
    if _IN_FILE.search(output):
        return ConfigurationError(f"invalid Terraform configuration: {title or 'see output'}", **kwargs)
    return TerraformError(f"terraform failed: {title or 'see output'}", **kwargs)


def first_error_title(output: str) -> str | None:
    match = _ERROR_TITLE.search(output)
    return match.group(1).strip() if match else None


def _contains(text: str, needles: tuple[str, ...]) -> bool:
    return any(needle in text for needle in needles)
