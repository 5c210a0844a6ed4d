"""Checks across sections, beyond what each field validates on its own: what `tfops serve` needs
before it starts (errors), and settings that are valid but probably not what was meant (warnings)."""

from __future__ import annotations

from tfops.config.settings import Settings
from tfops.config.stacks import StackDefaults
from tfops.errors import ConfigError
from tfops.models import OnDrift, OnMerge

MIN_SECRET_CHARS = 16
_LOOPBACK_HOSTS = ("127.", "[::1]", "localhost")


def http_needs(settings: Settings) -> list[str]:
    """What is configured that only the HTTP server can serve."""
    slack = settings.slack
    needs = {
        "slack.mode http": slack.enabled and slack.mode == "http" and slack.interactive,
        "webhooks": bool(settings.webhooks.sources),
        "api.tokens": bool(settings.api.tokens),
    }
    return [name for name, needed in needs.items() if needed]


def check_slack_channel(settings: Settings) -> None:
    """A Slack bot token needs a channel to post in."""
    slack = settings.slack
    if slack.enabled and not (slack.channel or slack.channels):
        raise ConfigError(
            "slack.channel: not set; a Slack bot token is configured but there is no channel to post in",
            hint="set slack.channel to a channel id such as C0123ABCD, or remove the slack token",
        )


def check_serving(settings: Settings) -> None:
    """What `tfops serve` checks before it starts: every secret it will read is there, and what
    needs the HTTP server has one. ConfigError names the field otherwise."""
    needs = http_needs(settings)
    if needs and not settings.http.listen:
        raise ConfigError(
            f"http.listen: not set, but {' and '.join(needs)} need the HTTP server",
            hint="set http.listen (e.g. 127.0.0.1:8080 behind a TLS proxy)",
        )
    slack = settings.slack
    if slack.enabled:
        settings.slack_token()
        if slack.mode == "socket":
            settings.slack_app_token()
        else:
            settings.slack_signing_secret()
    for source in settings.webhooks.sources:
        settings.webhook_secret(source)
    settings.api_tokens()


def warnings(settings: Settings) -> list[str]:
    """Settings that are valid but probably not what was meant."""
    found = []
    asking = False
    for where, policy in _effective_policies(settings):
        if OnMerge.ASK not in (policy.on_merge,) and OnDrift.ASK not in (policy.on_drift,):
            continue
        asking = True
        people = {a for a in policy.approvers if not a.startswith("S")}
        if not policy.approvers:
            found.append(
                f"{where}: asks for approval but lists no approvers; only `tfops approve` can decide"
            )
        elif len(people) == len(policy.approvers) and len(people) < policy.approvals_required:
            found.append(
                f"{where}: approvals_required is {policy.approvals_required} "
                f"but only {len(people)} approver(s) are listed"
            )
    found += _http_warnings(settings)
    slack = settings.slack
    if asking and not slack.enabled:
        found.append("an `ask` policy is set but Slack is off: approve with `tfops approve RUN_ID`")
    elif asking and not slack.interactive:
        found.append(
            f"slack.mode is {slack.mode} but its secret is not configured: buttons are shown, "
            "clicks cannot reach tfops, and only `tfops approve` decides"
        )
    return found


def _http_warnings(settings: Settings) -> list[str]:
    """An exposed listener without TLS, and webhook secrets or API tokens short enough to guess."""
    found = []
    http = settings.http
    if http.listen and not http.tls_cert and not http.listen.startswith(_LOOPBACK_HOSTS):
        found.append(
            f"http.listen is {http.listen} without TLS: tokens and secrets would cross the network in "
            "clear; keep it on loopback behind a TLS proxy, or set http.tls_cert and http.tls_key"
        )
    found += _ui_warnings(settings)
    secrets = [
        (f"webhooks.{source}", lambda s=source: settings.webhook_secret(s))
        for source in settings.webhooks.sources
    ]
    secrets += [
        (f"api.tokens.{i}", lambda i=i: settings.api_tokens()[i][1]) for i in range(len(settings.api.tokens))
    ]
    for where, read in secrets:
        try:
            value = read()
        except ConfigError:
            continue  # reported as an error elsewhere
        if value is not None and len(value) < MIN_SECRET_CHARS:
            found.append(
                f"{where}: the secret has {len(value)} characters; use {MIN_SECRET_CHARS} or more random ones"
            )
    return found


def _ui_warnings(settings: Settings) -> list[str]:
    """The status page off for want of a login, or trusting a header anyone could send."""
    http = settings.http
    if not http.listen or not http.ui.enabled or http.listen.startswith(_LOOPBACK_HOSTS):
        return []
    if http.ui.proxy_user_header:
        return [
            f"http.ui.proxy_user_header is set but http.listen is {http.listen}: whoever reaches tfops "
            f"directly can claim any user in {http.ui.proxy_user_header}; listen on loopback behind the proxy"
        ]
    if not settings.api.tokens:
        return [
            f"http.listen is {http.listen} and no login is configured: the status page answers 403; "
            "set api.tokens (log in with a read token) or http.ui.proxy_user_header behind an auth proxy"
        ]
    return []


def _effective_policies(settings: Settings) -> list[tuple[str, StackDefaults]]:
    defaults = settings.defaults
    policies = [("defaults", defaults)]
    for index, entry in enumerate(settings.stacks):
        explicit = {
            key: value
            for key in ("on_merge", "on_drift", "approvers", "approvals_required")
            if (value := getattr(entry, key)) is not None
        }
        policies.append((f"stacks.{index}", defaults.model_copy(update=explicit)))
    return policies
