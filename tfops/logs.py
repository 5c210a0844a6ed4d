"""Logging set-up: readable text by default, one JSON object per line for journald and shippers.

Every line logged while a run executes carries `run_id` and `stack`, in both formats:
the reconciler sets them in a context variable for its thread, and a filter copies them
onto each record, so code deep inside a run needs no logger of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

# One definition for tfops.yaml, TFOPS_* and the command line's --log-level/--log-format (here, not
# in tfops.config, so that the command line names them without importing the config models).
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]

_current_run: ContextVar[tuple[int, str] | None] = ContextVar("tfops_current_run", default=None)
# The secrets tfops holds itself (tfops.secrets.held_secrets): no log line may carry one.
_held_secrets: frozenset[str] = frozenset()


def hold_secrets(values: Iterable[str]) -> None:
    """Scrub these values from every log record from now on (in addition to those held before)."""
    global _held_secrets
    _held_secrets = _held_secrets | frozenset(value for value in values if value)


@contextmanager
def run_context(run_id: int, stack: str) -> Iterator[None]:
    token = _current_run.set((run_id, stack))
    try:
        yield
    finally:
        _current_run.reset(token)


class RunContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = _current_run.get()
        if current is not None and not hasattr(record, "run_id"):
            record.run_id, record.stack = current
        return True


class RedactSecretsFilter(logging.Filter):
    """Renders the message (and the traceback) once, scrubbed of every held secret.

    On the handler, not a logger: a logger's filters do not see records propagated from its
    children, and tfops, uvicorn and the libraries all log through child loggers.
    """

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self._secrets = None if secrets is None else frozenset(secrets)  # None: the held ones

    def filter(self, record: logging.LogRecord) -> bool:
        held = _held_secrets if self._secrets is None else self._secrets
        if not held:
            return True
        from tfops.terraform.plan import scrub  # tfops.logs is imported before anything else

        message = record.getMessage()
        cleaned = scrub(message, held)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info is not None and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, held)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if hasattr(record, "run_id") and f"run {record.run_id} " not in record.getMessage():
            return line.replace(": ", f": [run {record.run_id} {getattr(record, 'stack', '?')}] ", 1)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("run_id", "stack"):
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if not record.exc_text and record.exc_info is not None and record.exc_info[0] is not None:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def make_handler(handler: logging.Handler, fmt: str = "text") -> logging.Handler:
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RunContextFilter())
    handler.addFilter(RedactSecretsFilter())
    return handler


def setup_logging(level: str = "info", fmt: str = "text", handler: logging.Handler | None = None) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(handler or logging.StreamHandler(sys.stderr), fmt)]
    root.setLevel(level.upper())
    # APScheduler logs every job execution at INFO, and Alembic every migration step: noise.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
