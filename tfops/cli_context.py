"""The command's context: the configuration (validated, or its reader view from the cache), the
logging it asks for, the app and the store, each made once and only when a command needs it.
Light at import, as tfops.cli is (tests/unit/test_cli_startup.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tfops.readcache import cache_key, recall, remember
from tfops.readview import ReaderView


class Context:
    """What the shared options chose, filled in as they are parsed (see `_shared_options`)."""

    def __init__(
        self, config: Path | None = None, log_level: str | None = None, log_format: str | None = None
    ) -> None:
        self.config_path = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings = None
        self._view: ReaderView | None = None
        self._store = None

    @property
    def settings(self):
        """The configuration, validated in full; its reader view is kept for the reading commands."""
        if self._settings is None:
            from tfops.config import load_settings
            from tfops.readview import view_of

            key = cache_key(self.config_path, os.environ)
            self._settings = load_settings(self.config_path)
            view = view_of(self._settings)
            # Kept only when the configuration validated is the one the key was made of: a file
            # edited during validation is left for the next command to validate.
            if key is not None and cache_key(self.config_path, os.environ) == key:
                remember(key, view)
            self._view = view
        return self._settings

    def view(self) -> ReaderView:
        """What the reading commands need of the configuration: from the validated-configuration
        cache when it holds this configuration (no validation, no pydantic models), else from a full
        validation, whose errors stop the command as they stop every other (tfops.readcache)."""
        if self._view is None:
            key = cache_key(self.config_path, os.environ)
            self._view = recall(key, os.environ) if key is not None else None
        if self._view is None:
            from tfops.readview import view_of

            self._view = view_of(self.settings)
        return self._view

    def setup_logging(self) -> None:
        from tfops.logs import setup_logging

        settings = self.settings
        setup_logging(self.log_level or settings.log_level, self.log_format or settings.log_format)

    def app(self):
        from tfops.app import App

        self.setup_logging()
        return App(self.settings)

    def store(self):
        """The store, opened and migrated once per command (status reads it in several places)."""
        if self._store is None:
            from tfops.store import Store

            self._store = Store(self.settings.store_url)
            self._store.upgrade()
        return self._store

    def reader(self):
        """The store for a command that only reads it: never migrated behind the daemon's back (a
        store at another schema revision is an error saying what to do; see docs/decisions.md)."""
        if self._store is None:
            from tfops.store import Store

            self._store = Store(self.view().store_url)
            self._store.open_for_reading()
        return self._store
