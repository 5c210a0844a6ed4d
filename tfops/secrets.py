"""The secrets tfops holds itself, so that nothing it writes or sends ever carries one.

tfops reads tokens for Slack, the webhooks, the API and the Git remote. A stack can read the
same files (`file("/etc/tfops/slack-bot-token")`) and print them in a plan, an output or an
error. So every value read here joins the redaction set of every run (its log, its stored summary
and error, and so Slack and the API, which show only what the store holds) and of every log line
the process writes (`tfops.logs.hold_secrets`).

Values are read the way `serve` reads them; one that cannot be read (an unset variable) is not
held, since nothing can leak it, and `serve`/`check-config` report it on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial

from tfops.config import Settings
from tfops.errors import ConfigError
from tfops.terraform.plan import MIN_SECRET_LENGTH


def held_secrets(settings: Settings) -> frozenset[str]:
    """Every configured secret's value (at least MIN_SECRET_LENGTH long: shorter would scrub words)."""
    values: set[str] = set()
    for read in _readers(settings):
        try:
            found = read()
        except ConfigError:
            continue
        values.update(value for value in found if value and len(value) >= MIN_SECRET_LENGTH)
    return frozenset(values)


def _readers(settings: Settings) -> Iterator[Callable[[], Iterable[str | None]]]:
    """One reader per secret (a reader that fails loses only its own value)."""
    yield lambda: [settings.repo_token()]
    if settings.slack.enabled:
        yield lambda: [settings.slack_token()]
        yield lambda: [settings.slack_app_token()]
        yield lambda: [settings.slack_signing_secret()]
    for source in settings.webhooks.sources:
        yield partial(_one, settings.webhook_secret, source)
    yield lambda: [token for _name, token, _scope in settings.api_tokens()]


def _one(read: Callable[[str], str | None], name: str) -> list[str | None]:
    return [read(name)]
