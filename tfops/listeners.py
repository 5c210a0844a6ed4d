"""What the daemon listens on: the Slack Socket Mode connection and the HTTP server with the routes
the configuration asks for. Built by `serve` (`App.build_listeners`), not by one-shot commands:
they need neither, nor the secrets behind them.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter

from tfops.compose import Parts
from tfops.config import Settings, http_needs
from tfops.metrics import metrics_router
from tfops.notify.interactions import SlackInteractions
from tfops.notify.socket_mode import SocketModeTransport
from tfops.observe import readiness_facts
from tfops.preflight import needed
from tfops.scheduler import queue_for_api
from tfops.web.api import ApiToken, api_router
from tfops.web.app import create_app
from tfops.web.health import health_router
from tfops.web.server import HttpOptions, WebServer
from tfops.web.slack import slack_router
from tfops.web.ui_setup import ui_router_for
from tfops.web.webhooks import RepoMatch, WebhookSecrets, webhook_router


def socket_mode_for(settings: Settings, interactions: SlackInteractions | None) -> SocketModeTransport | None:
    slack = settings.slack
    if interactions is None or slack.mode != "socket" or not slack.interactive:
        return None
    return SocketModeTransport(
        needed(settings.slack_app_token(), "slack.app_token"),
        interactions,
        base_url=slack.base_url,
        timeout=slack.timeout,
    )


def web_server_for(parts: Parts) -> WebServer | None:
    """The HTTP server, when `http.listen` is set: health, metrics, and what is configured of
    Slack's HTTP mode, the webhooks and the API."""
    settings = parts.settings
    http = settings.http
    if not http.listen:
        return None
    facts = readiness_facts(
        parts.store,
        parts.scheduler,
        parts.poller,
        poll_interval=settings.repo.poll_interval,
        started_at=parts.started_at,
        leading=parts.leadership.is_leader,
        failover=settings.ha.failover,
    )
    routers = [health_router(facts), metrics_router(parts.metrics), *_optional_routers(parts)]
    options = HttpOptions.from_listen(http.listen, tls_cert=http.tls_cert, tls_key=http.tls_key)
    return WebServer(create_app(routers, max_body=http.max_body), options)


def _optional_routers(parts: Parts) -> list[APIRouter]:
    settings = parts.settings
    needs, routers = http_needs(settings), []
    if "slack.mode http" in needs and parts.interactions is not None:
        secret = needed(settings.slack_signing_secret(), "slack.signing_secret")
        routers.append(slack_router(secret, parts.interactions))
    if "webhooks" in needs:
        routers.append(_webhooks(parts))
    tokens = [ApiToken(name, token, scope) for name, token, scope in settings.api_tokens()]
    scrub = partial(_hide_host_paths, str(settings.data_dir))
    if "api.tokens" in needs:
        routers.append(
            api_router(
                store=parts.store,
                stacks=parts.registry.current,
                queue_run=partial(queue_for_api, parts.store, parts.queue),
                tokens=tokens,
                next_check=parts.scheduler.next_drift_check,
                scrub=scrub,
            )
        )
    # The status page, last: its `GET /` must not shadow a route of the others.
    page = ui_router_for(
        settings,
        store=parts.store,
        stacks=parts.registry.current,
        tokens=tokens,
        next_check=parts.scheduler.next_drift_check,
        scrub=scrub,
        git=parts.git,
    )
    if page is not None:
        routers.append(page)
    return routers


def _webhooks(parts: Parts) -> APIRouter:
    settings = parts.settings
    secrets = WebhookSecrets(
        **{source: settings.webhook_secret(source) for source in settings.webhooks.sources}
    )
    names = [settings.webhooks.repository] if settings.webhooks.repository else []
    repo = RepoMatch.from_remote(settings.require_repo_url(), settings.repo.branch, *names)
    router = webhook_router(secrets, repo, parts.fetch_soon, on_delivery=parts.metrics.webhook_delivery)
    parts.metrics.webhook_sources(settings.webhooks.sources)
    return router


def _hide_host_paths(data_dir: str, text: str) -> str:
    """Errors quote commands with paths under the data directory: host details, not API data."""
    return text.replace(data_dir, "<data_dir>")
