"""``terraform:``: which binary runs the stacks, and how many runs at once and for how long."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from tfops.config.durations import Duration, PositiveDuration
from tfops.config.fields import ConfigPath, EnvNamePattern, FileRelative, Section, absolute_path


def _binary(binary: str) -> str:
    binary = binary.strip()
    if not binary or binary.startswith("-"):
        raise ValueError("must be a command name such as terraform or tofu, or a path to one")
    # A bare name is looked up on PATH when a run starts; anything with a slash is a path.
    return str(absolute_path(binary)) if "/" in binary or binary.startswith("~") else binary


def _anchor_if_path(value: Any, anchor: Callable[[Any], Any]) -> Any:
    looks_like_path = isinstance(value, str) and ("/" in value or value.strip().startswith("~"))
    return anchor(value) if looks_like_path else value


class TerraformSettings(Section):
    binary: Annotated[str, AfterValidator(_binary), FileRelative(_anchor_if_path)] = "terraform"
    cli_config: ConfigPath | None = None
    plugin_cache_dir: ConfigPath | None = None
    max_parallel: int = Field(default=4, ge=1)
    # At most this many of the `max_parallel` workers run drift checks at once; None: all of them.
    # Deploys are always dispatched before waiting drift checks; a value below max_parallel also
    # keeps workers free for them, so a deploy starts at once even in the middle of a sweep.
    drift_parallel: int | None = Field(default=None, ge=1)
    timeout: PositiveDuration = 1800.0
    lock_timeout: Duration = 300.0  # 0 is Terraform's own default: fail at once when the state is locked
    stop_grace: PositiveDuration = 60.0
    env_passthrough: tuple[EnvNamePattern, ...] = ()
