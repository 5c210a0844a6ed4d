"""What a stack may be called and where it may be: the rules tfops.yaml is checked against when it
is read (tfops.config) and discovered stacks at each head (tfops.stacks). Pure functions of text."""

from __future__ import annotations

import posixpath
import re
from fnmatch import fnmatchcase

from tfops.errors import ConfigError, StackPathError

# Stack names become directory names under <data_dir>/stacks and appear in Slack
# buttons and URLs, so they are kept to a conservative alphabet.
STACK_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def is_stack_name(name: str) -> bool:
    return bool(STACK_NAME_PATTERN.fullmatch(name)) and name not in (".", "..")


def validate_stack_name(name: str) -> str:
    if not is_stack_name(name):
        raise ConfigError(f"stack name {name!r} may only hold letters, digits, '_', '.' and '-'")
    return name


def safe_stack_name(text: str) -> str:
    """``text`` with every character outside the name alphabet replaced by ``_``."""
    return _NOT_IN_NAME.sub("_", text)


def validate_stack_path(path: str) -> str:
    """Return ``path`` as a normalised POSIX path relative to the repository root.

    ``"./stacks//app/"`` becomes ``"stacks/app"``; the root itself is ``"."``. Absolute
    paths, ``~`` and anything that climbs out of the repository (``../x``,
    ``a/../../x``) raise :class:`StackPathError`. Glob patterns pass through unchanged
    apart from the normalisation.
    """
    text = path.strip() if isinstance(path, str) else ""
    if not text:
        raise StackPathError("stack path is empty")
    if "\\" in text:
        raise StackPathError(f"stack path {path!r} uses '\\'; write paths with '/'")
    if text.startswith(("/", "~")) or _WINDOWS_DRIVE.match(text):
        raise StackPathError(f"stack path {path!r} is absolute; give it relative to the repository root")
    normalised = posixpath.normpath(text)
    if normalised == ".." or normalised.startswith("../"):
        raise StackPathError(f"stack path {path!r} leaves the repository")
    return normalised


def glob_matches(parts: list[str], segments: list[str]) -> bool:
    """Does a path (its components) match a `discover` glob (its components)? ``*`` stays inside
    one component, ``**`` spans any number of them."""
    if not segments:
        return not parts
    head, rest = segments[0], segments[1:]
    if head == "**":
        return any(glob_matches(parts[index:], rest) for index in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and glob_matches(parts[1:], rest)
