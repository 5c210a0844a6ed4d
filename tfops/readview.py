"""The reader view: what `tfops status`, `runs` and `show` need from a validated configuration.

Plain data, built from a fully validated :class:`tfops.config.Settings` (:func:`view_of`) and kept
as JSON by tfops.readcache, so that a reading command whose configuration was already validated
answers without importing pydantic's model machinery or tfops' config models. It holds where the
store is and, for each stack entry, what the listing shows (drift interval, order, policy), never
a secret: a store URL with a password is kept masked, with where its real value is read at use.

Which entry gives a recorded stack follows tfops.stacks' rule: an explicit entry by its path, else
the first `discover` glob that matches (tests/unit/test_reader_view.py checks the two agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from tfops.naming import glob_matches

if TYPE_CHECKING:
    from tfops.config import Settings, StackDefaults, StackEntry

# Bumped whenever the view's shape or meaning changes: an older cache file is then a miss.
VIEW_FORMAT = 2

# The password of a database URL, as tfops.config.store masks it (a test checks they agree).
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")
MASKED = r"\1***@"
STORE_URL_ENV = "TFOPS_STORE__URL"


@dataclass(frozen=True)
class StackRule:
    """One `stacks:` entry with the defaults folded in, as the listing uses it."""

    path: str | None  # an explicit entry's directory (normalised)
    discover: str | None  # or a glob entry's pattern (normalised)
    drift_interval: float  # seconds; 0: no scheduled drift checks
    depends_on: tuple[str, ...]
    on_merge: str
    on_drift: str


@dataclass(frozen=True)
class ReaderView:
    """What the reading commands read from tfops.yaml and TFOPS_*; see the module docstring."""

    store_url: str  # whole in memory; in the cache, its password masked (`kept_form`)
    store_url_from: str | None  # where a URL with a password was found: "env:NAME" or "file"
    stacks: tuple[StackRule, ...]
    ha_failover: float  # seconds: `tfops status` marks an instance silent for longer presumed dead

    def to_json(self) -> dict[str, Any]:
        return {"format": VIEW_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReaderView:
        """Raises KeyError, TypeError or ValueError on anything but what :meth:`to_json` wrote."""
        if data["format"] != VIEW_FORMAT:
            raise ValueError("another format")
        stacks = tuple(
            StackRule(
                path=_optional_text(item["path"]),
                discover=_optional_text(item["discover"]),
                drift_interval=float(item["drift_interval"]),
                depends_on=tuple(_text(name) for name in item["depends_on"]),
                on_merge=_text(item["on_merge"]),
                on_drift=_text(item["on_drift"]),
            )
            for item in data["stacks"]
        )
        source = _optional_text(data["store_url_from"])
        if source is not None and source != "file" and not source.startswith("env:"):
            raise ValueError("unknown store URL source")
        failover = float(data["ha_failover"])
        return cls(
            store_url=_text(data["store_url"]), store_url_from=source, stacks=stacks, ha_failover=failover
        )


def view_of(settings: Settings) -> ReaderView:
    """The view of validated settings, its store URL whole (see :func:`kept_form`)."""
    url = settings.store_url
    source = _password_source(url, settings) if _URL_PASSWORD.search(url) else None
    stacks = tuple(_rule(entry, settings.defaults) for entry in settings.stacks)
    return ReaderView(store_url=url, store_url_from=source, stacks=stacks, ha_failover=settings.ha.failover)


def kept_form(view: ReaderView) -> ReaderView | None:
    """The view as the cache keeps it: a store URL's password masked, to be read at use where
    `store_url_from` says; None when it cannot be kept without the secret (a password that came
    neither from tfops.yaml's `store.url` nor from $TFOPS_STORE__URL)."""
    if not _URL_PASSWORD.search(view.store_url):
        return view
    if view.store_url_from is None:
        return None
    return replace(view, store_url=mask_password(view.store_url))


def mask_password(url: str) -> str:
    return _URL_PASSWORD.sub(MASKED, url)


def _password_source(url: str, settings: Settings) -> str | None:
    environ = settings._environ
    named = [name for name in environ if name.upper().startswith("TFOPS_STORE")]
    if named:  # $TFOPS_STORE__URL alone names it; `TFOPS_STORE='{"url": ...}'` is not kept
        whole = len(named) == 1 and named[0].upper() == STORE_URL_ENV and environ[named[0]].strip() == url
        return f"env:{named[0]}" if whole else None
    config = settings.config_file
    try:
        content = config.read_bytes() if config is not None else None
    except OSError:
        return None
    return "file" if content is not None and url_in_file(content) == url else None


def url_in_file(content: bytes) -> str:
    """`store.url` as tfops.yaml spells it (for a URL with a password, which is never anchored)."""
    import yaml  # only for a store URL with a password in tfops.yaml, which validated as a mapping

    try:
        url = yaml.safe_load(content)["store"]["url"]
    except (yaml.YAMLError, KeyError, TypeError):
        return ""
    return url.strip() if isinstance(url, str) else ""


def _rule(entry: StackEntry, defaults: StackDefaults) -> StackRule:
    # The same folding as tfops.stacks._make_stack (checked by tests/unit/test_reader_view.py).
    return StackRule(
        path=entry.path,
        discover=entry.discover,
        drift_interval=defaults.drift_interval if entry.drift_interval is None else entry.drift_interval,
        depends_on=tuple(dict.fromkeys(entry.depends_on)),
        on_merge=str(entry.on_merge or defaults.on_merge),
        on_drift=str(entry.on_drift or defaults.on_drift),
    )


def recorded_rules(view: ReaderView, recorded: Iterable[tuple[str, str]]) -> dict[str, StackRule]:
    """The rule of each stack the store recorded (name, path): the explicit entry with its path,
    else the first glob that matches; a stack no entry gives any more is left out."""
    explicit = {rule.path: rule for rule in view.stacks if rule.path is not None}
    globs = [
        (rule, [part for part in rule.discover.split("/") if part != "."])
        for rule in view.stacks
        if rule.discover is not None
    ]
    found = {}
    for name, path in recorded:
        rule = explicit.get(path) or next(
            (glob_rule for glob_rule, segments in globs if glob_matches(path.split("/"), segments)), None
        )
        if rule is not None:
            found[name] = rule
    return found


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)
