"""The status page as the daemon mounts it: its gate and context from the configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter

from tfops.config import Settings
from tfops.models import Stack
from tfops.store.store import Store
from tfops.views import Scrub
from tfops.web.api import ApiToken
from tfops.web.server import parse_listen
from tfops.web.ui import UiContext, ui_router
from tfops.web.ui_auth import UiAccess, is_loopback, load_session_key
from tfops.web.ui_commits import CommitLookup, CommitSource

SESSION_KEY_FILE = "ui-session.key"


def session_key_path(settings: Settings) -> Path:
    return settings.http.ui.session_key_file or Path(settings.data_dir) / SESSION_KEY_FILE


def ui_access(settings: Settings, tokens: Sequence[ApiToken]) -> UiAccess:
    """The page's gate: the API's tokens, the signing key (created on first use), the proxy header."""
    ui = settings.http.ui
    host, _ = parse_listen(settings.http.listen or "127.0.0.1:0")
    path = session_key_path(settings)
    if ui.session_key_file is None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return UiAccess(
        tokens,
        load_session_key(path),
        loopback=is_loopback(host),
        proxy_header=ui.proxy_user_header,
        ttl=ui.session_ttl,
    )


def ui_router_for(
    settings: Settings,
    *,
    store: Store,
    stacks: Callable[[], Mapping[str, Stack]],
    tokens: Sequence[ApiToken],
    next_check: Callable[[str], datetime | None],
    scrub: Scrub,
    git: CommitSource | None,
) -> APIRouter | None:
    """The page's routes, or None when `http.ui.enabled` is false."""
    if not settings.http.ui.enabled:
        return None
    context = UiContext(
        store=store,
        stacks=stacks,
        access=ui_access(settings, tokens),
        commits=CommitLookup(git),
        data_dir=Path(settings.data_dir),
        next_check=next_check,
        scrub=scrub,
    )
    return ui_router(context)
