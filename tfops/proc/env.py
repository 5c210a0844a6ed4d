"""The environment of a child process: an allowlist, never tfops' own environment wholesale.

:func:`build_env` and :func:`terraform_env` start from an allowlist, so tfops' own secrets
(``TFOPS_*``) never reach a child process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})

# What a subprocess legitimately needs from tfops' own environment: where programs
# are, who and where it runs, locale, temp dir, trust store, proxies, ssh agent.
_INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSH_AUTH_SOCK",
    }
)
_INHERITED_PATTERNS = ("LC_*",)
# Never inherited, even when a passthrough pattern matches: tfops' own secrets, and
# a CLI config tfops did not choose (terraform_env sets its own explicitly).
_NEVER_INHERITED = ("TFOPS_*", "TF_CLI_CONFIG_FILE")

# Cloud and Terraform settings a Terraform run needs from the daemon's environment
# (region, profile, role, credentials of the VM, TF_VAR_ inputs, registry tokens, logging).
DEFAULT_TERRAFORM_PASSTHROUGH: tuple[str, ...] = (
    "AWS_*",
    "GOOGLE_*",
    "CLOUDSDK_*",
    "ARM_*",
    "AZURE_*",
    "TF_VAR_*",
    "TF_LOG*",
    "TF_TOKEN_*",
)


def build_env(
    *, inherit: Mapping[str, str], passthrough: Iterable[str] = (), extra: Mapping[str, str] = _EMPTY
) -> dict[str, str]:
    """The environment for a child: the allowlist and ``passthrough`` from ``inherit``, then ``extra``.

    A ``passthrough`` entry is a variable name, or a prefix when it ends in ``*``.
    ``TFOPS_*`` and ``TF_CLI_CONFIG_FILE`` are never inherited; ``extra`` is set as given.
    """
    wanted = (*_INHERITED_PATTERNS, *_checked_patterns(passthrough))
    env = {
        name: value
        for name, value in inherit.items()
        if (name in _INHERITED_NAMES or _matches(name, wanted)) and not _matches(name, _NEVER_INHERITED)
    }
    env.update(_checked_extra(extra))
    return env


def terraform_env(
    *,
    inherit: Mapping[str, str],
    cli_config: Path | None,
    plugin_cache_dir: Path | None,
    data_dir: Path | None,
    passthrough: Iterable[str] = (),
    extra: Mapping[str, str] = _EMPTY,
) -> dict[str, str]:
    """:func:`build_env` with :data:`DEFAULT_TERRAFORM_PASSTHROUGH`, made non-interactive, and tfops' paths.

    The automation settings win over ``extra`` (a stack must not turn prompts back
    on); the paths are made absolute because Terraform runs in the stack directory.
    """
    env = build_env(inherit=inherit, passthrough=(*DEFAULT_TERRAFORM_PASSTHROUGH, *passthrough), extra=extra)
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    paths = {
        "TF_CLI_CONFIG_FILE": cli_config,
        "TF_PLUGIN_CACHE_DIR": plugin_cache_dir,
        "TF_DATA_DIR": data_dir,
    }
    env.update({name: str(Path(path).absolute()) for name, path in paths.items() if path is not None})
    return env


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(
        name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern for pattern in patterns
    )


def _checked_patterns(passthrough: Iterable[str]) -> tuple[str, ...]:
    if isinstance(passthrough, str):
        raise TypeError(f"passthrough must be a list of names, not a single string: {passthrough!r}")
    patterns = tuple(passthrough)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.rstrip("*"):
            raise ValueError(f"passthrough entry {pattern!r} must be a variable name or a NAME_PREFIX*")
        if "*" in pattern[:-1]:
            raise ValueError(f"passthrough entry {pattern!r}: '*' is only allowed at the end (a prefix)")
    return patterns


def _checked_extra(extra: Mapping[str, str]) -> dict[str, str]:
    for name, value in extra.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ValueError(f"environment variable name {name!r} is not valid")
        if not isinstance(value, str):
            # Only the type: the value may be a secret.
            raise TypeError(f"environment variable {name} must be a str, got {type(value).__name__}")
    return dict(extra)
