"""The validated-configuration cache: a reader view (tfops.readview) kept per configuration.

Every command that validates the configuration in full writes the view of what it validated
(:func:`remember`), keyed by a digest of everything that validation depended on: the config
file's bytes, which file it is, every ``TFOPS_*`` variable, the variables the defaults are made
of (``HOME``, ``XDG_STATE_HOME``, ``STATE_DIRECTORY``), the working directory (relative paths),
the user, and the code that validates (tfops' and pydantic's files). `tfops status`, `runs` and
`show` compute that key with nothing but hashlib (:func:`cache_key`) and, when the file holds a
view under the same key (:func:`recall`), skip validation: it is the view of a configuration that
passed it. Any change to one of the inputs is another key, hence a full validation with the same
errors as `tfops check-config`; a configuration that fails never gets an entry. An unreadable,
corrupt, foreign or other-format file is a miss too. Why a cache rather than lighter validation,
and why under $XDG_CACHE_HOME: docs/decisions.md, "Issue 12: a validated-configuration cache".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tfops import __version__
from tfops.readview import ReaderView, kept_form, mask_password, url_in_file

# The environment the defaults are made of (data_dir, `~`), besides every TFOPS_* variable.
_DEFAULTS_ENV = ("HOME", "XDG_STATE_HOME", "STATE_DIRECTORY")
# The code whose rules decide what passes validation: a change to any of it is a miss.
_VALIDATING_PACKAGES = ("pydantic", "pydantic_core", "pydantic_settings", "yaml")
_PREFIX = "TFOPS_"
_CONFIG_ENV = "TFOPS_CONFIG"


@dataclass(frozen=True)
class CacheKey:
    """Where a configuration's entry is (`file`) and what it must say to be a hit (`digest`)."""

    file: Path
    digest: str
    config_bytes: bytes | None  # kept to read a store URL's password at use ("file" source)


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/tfops/config``, else ``~/.cache/tfops/config`` (the XDG default)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore relative values
        base = os.path.join(environ.get("HOME") or str(Path.home()), ".cache")
    return Path(base) / "tfops" / "config"


def cache_key(config: Path | None, environ: Mapping[str, str]) -> CacheKey | None:
    """The key of the configuration tfops.config.load_settings would read now; None when its
    file cannot be read or the key cannot be made (then full validation says what is wrong)."""
    try:
        return _key(config, environ)
    except (OSError, RuntimeError):  # e.g. a working directory removed, no home directory
        return None


def _key(config: Path | None, environ: Mapping[str, str]) -> CacheKey | None:
    chosen: Path | None = config
    if chosen is None and environ.get(_CONFIG_ENV, "").strip():
        chosen = Path(environ[_CONFIG_ENV].strip())
    if chosen is None:
        default = Path("tfops.yaml")
        chosen = default if default.is_file() else None
    else:
        chosen = chosen.expanduser()
    where = hashlib.sha256()
    for part in _identity(chosen, environ):
        where.update(part.encode("utf-8", "surrogateescape") + b"\0")
    content: bytes | None = None
    if chosen is not None:
        try:
            content = chosen.read_bytes()
        except OSError:
            return None
    digest = where.copy()
    digest.update(content if content is not None else b"no config file")
    name = where.hexdigest()[:32] + ".json"
    return CacheKey(cache_dir(environ) / name, digest.hexdigest(), content)


def _identity(chosen: Path | None, environ: Mapping[str, str]) -> list[str]:
    """Everything but the file's bytes: the file's name in the cache comes from this alone, so one
    configuration used one way keeps one entry, rewritten as the file is edited."""
    names = sorted(name for name in environ if name.upper().startswith(_PREFIX) or name in _DEFAULTS_ENV)
    return [
        f"tfops {__version__}",
        os.path.abspath(chosen) if chosen is not None else "",
        os.getcwd(),
        str(os.getuid()),
        *(f"{name}={environ[name]}" for name in names),
        *_code_fingerprint(),
    ]


def _code_fingerprint() -> list[str]:
    """Each validating file's path, size and modification time: an upgrade or an edit of tfops'
    code or of pydantic's is a miss, even without a version change (an editable install)."""
    found = []
    tfops_dir = Path(__file__).parent
    for folder in (tfops_dir, tfops_dir / "config", tfops_dir / "aws"):  # what tfops.config imports
        found += _stamps(folder)
    for package in _VALIDATING_PACKAGES:
        module = sys.modules.get(package)
        origin = getattr(module, "__file__", None) if module else _origin(package)
        if origin:
            found += _stamps(Path(origin).parent)
    return found


def _origin(package: str) -> str | None:
    from importlib.util import find_spec

    spec = find_spec(package)
    return spec.origin if spec is not None else None


def _stamps(folder: Path) -> list[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return [f"{folder} unreadable"]
    stamps = []
    for entry in entries:
        if entry.name.endswith((".py", ".so")):
            try:
                info = entry.stat()
            except OSError:  # removed while listed (an upgrade under way): a stamp of its own
                stamps.append(f"{entry.path} gone")
                continue
            stamps.append(f"{entry.path} {info.st_size} {info.st_mtime_ns}")
    return stamps


def recall(key: CacheKey, environ: Mapping[str, str]) -> ReaderView | None:
    """The view kept under `key`, with any store password read back; None on any doubt."""
    data = _read_own_file(key.file)
    try:
        if data is None or data.get("key") != key.digest:
            return None
        view = ReaderView.from_json(data["view"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return _with_password(view, key, environ)


def _read_own_file(path: Path) -> dict | None:
    """The JSON in `path` if this user owns it and nobody else may write it (a cache another user
    could write could point the reading commands at another store)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > 4 << 20:
            return None
        try:
            data = json.loads(handle.read())
        except (OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None


def _with_password(view: ReaderView, key: CacheKey, environ: Mapping[str, str]) -> ReaderView | None:
    """The view with its store URL whole again, read where validation found it; None when that
    value no longer masks to the kept one (then validation must run)."""
    source = view.store_url_from
    if source is None:
        return view
    if source.startswith("env:"):
        url = environ.get(source.removeprefix("env:"), "").strip()
    else:
        url = url_in_file(key.config_bytes or b"")
    if not url or mask_password(url) != view.store_url:
        return None
    return replace(view, store_url=url)


def remember(key: CacheKey, view: ReaderView) -> None:
    """Keep `view` under `key` (its password masked, or not at all: tfops.readview.kept_form) as a
    temporary file renamed over the entry (a reader sees the old entry
    or the new one, never half of one), readable by this user only. Best effort: a cache that
    cannot be written costs the next reading command a validation, nothing else."""
    kept = kept_form(view)
    if kept is None:
        return
    folder = key.file.parent
    temporary = folder / f".{key.file.name}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"key": key.digest, "view": kept.to_json()}, handle)
        os.replace(temporary, key.file)
    except OSError:
        with contextlib.suppress(OSError):  # the folder may be what could not be made
            temporary.unlink(missing_ok=True)
