"""``describe``: the summary `tfops check-config` prints. Shows where secrets come from, never
their values."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfops.config.aws import AwsSettings, StackAwsSettings, merge_stack_aws
from tfops.config.durations import format_duration
from tfops.config.fields import has_source
from tfops.config.guards import describe_rules
from tfops.config.http import HttpSettings
from tfops.config.settings import Settings
from tfops.config.stacks import StackDefaults, StackEntry
from tfops.config.store import mask_url_password


def describe(settings: Settings) -> str:
    """A summary for `tfops check-config`. Shows where secrets come from, never their values."""
    terraform, repo = settings.terraform, settings.repo
    polling = (
        f"every {format_duration(repo.poll_interval)}, fetch timeout {format_duration(repo.fetch_timeout)}"
    )
    timeouts = ", ".join(
        f"{label} {format_duration(seconds)}"
        for label, seconds in (
            ("run", terraform.timeout),
            ("state lock", terraform.lock_timeout),
            ("stop grace", terraform.stop_grace),
        )
    )
    lines = [
        f"config file       {settings.config_file or 'none (built-in defaults and TFOPS_* environment)'}",
        f"data dir          {settings.data_dir}",
        f"logging           {settings.log_level}, {settings.log_format}",
        f"store             {mask_url_password(settings.store_url)}",
        f"redaction         {len(settings.redact_patterns)} configured pattern(s)",
        f"ha                {_describe_ha(settings)}",
        "repo",
        f"  url             {repo.url or 'not set (tfops serve needs it)'}",
        f"  branch          {repo.branch}",
        f"  polling         {polling}",
        f"  checkout        {settings.checkout_dir}",
        f"  credentials     {_describe_credentials(settings)}",
        "terraform",
        f"  binary          {terraform.binary}",
        f"  cli config      {terraform.cli_config or 'none'}",
        f"  plugin cache    {settings.plugin_cache_dir}",
        f"  parallel runs   {terraform.max_parallel}",
        f"  timeouts        {timeouts}",
        f"  env passthrough {', '.join(terraform.env_passthrough) or 'none'}",
        *_describe_slack(settings),
        f"http              {_describe_http(settings.http)}",
        f"  webhooks        {_describe_webhooks(settings)}",
        f"  api             {_describe_api(settings)}",
        f"  status page     {_describe_ui(settings)}",
        f"aws               {_describe_aws(settings.aws)}",
        f"stack defaults    {_describe_policy(settings.defaults)}",
        *_describe_stack_aws(settings, settings.defaults.aws, settings.defaults.secrets, (), indent="  "),
        f"stacks            {len(settings.stacks)} entr{'y' if len(settings.stacks) == 1 else 'ies'}",
    ]
    for entry in settings.stacks:
        lines.append(f"  {_describe_entry(entry, settings.defaults)}")
        aws = merge_stack_aws(settings.defaults.aws, entry.aws)
        secrets = {**settings.defaults.secrets, **entry.secrets}
        lines.extend(_describe_stack_aws(settings, aws, secrets, entry.backend_config, indent="    "))
    return "\n".join(lines)


def _describe_ha(settings: Settings) -> str:
    """ "instance vm1-1a2b3c4d, failover 15s, several daemons share this PostgreSQL store" """
    many = not settings.store_url.startswith("sqlite")
    mode = "several daemons share this PostgreSQL store" if many else "one daemon per SQLite file"
    instance = settings.ha.instance_for(settings.data_dir)
    pinned = settings.ha.local_state_instance
    if many and pinned:
        mode += f", stacks with local state run on {pinned}"
    return f"instance {instance}, failover {format_duration(settings.ha.failover)}, {mode}"


def _describe_aws(aws: AwsSettings) -> str:
    region = f"region {aws.region or 'from the default chain (AWS_REGION, profile)'}"
    endpoint = f"endpoint {aws.endpoint_url or 'AWS public endpoints'}"
    endpoint += "".join(f", {service} at {url}" for service, url in sorted(aws.service_endpoints.items()))
    return f"{region}, {endpoint}, drift attribution {'on' if aws.attribution else 'off'} by default"


def _describe_stack_aws(
    settings: Settings,
    aws: StackAwsSettings,
    secrets: Mapping[str, str],
    backend_config: tuple[str, ...],
    indent: str,
) -> list[str]:
    """A stack's AWS identities, secret references (names and references: never values, which
    tfops reads only at run time) and backend config files."""
    own = "daemon's own AWS identity"
    roles = (
        f"plan {aws.plan_role or own}, apply {aws.apply_role or own}"
        if aws.plan_role or aws.apply_role
        else own
    )
    if aws.plan_role or aws.apply_role:
        roles += f", sessions {format_duration(aws.session_duration)}"
        if aws.external_id_env:
            roles += f", external id {_describe_ref(settings, aws.external_id_env, None)}"
    attribution = "on" if aws.attribution else "off"
    lines = [f"{indent}aws roles       {roles}; drift attribution {attribution}"]
    if secrets:
        refs = ", ".join(f"{name} from {reference}" for name, reference in sorted(secrets.items()))
        lines.append(f"{indent}secrets         {refs}")
    if backend_config:
        lines.append(f"{indent}backend config  {', '.join(backend_config)}")
    return lines


def _describe_secret(settings: Settings, section: str, name: str) -> str:
    holder = getattr(settings, section)
    return _describe_source(settings, holder, name)


def _describe_slack(settings: Settings) -> list[str]:
    slack = settings.slack
    if not slack.enabled:
        return ["slack             off (no bot token configured)"]
    channels = f"channel {slack.channel or 'none'}" + (
        f", {len(slack.channels)} per-stack channel(s)" if slack.channels else ""
    )
    lines = [
        f"slack             {channels}, mention {slack.mention or 'none'}",
        f"  bot token       {_describe_secret(settings, 'slack', 'bot_token')}",
    ]
    if slack.mode == "http":
        secret = _describe_secret(settings, "slack", "signing_secret")
        clicks = f"HTTP mode (POST /slack/interactions), signing secret {secret}"
    else:
        clicks = f"Socket Mode, app token {_describe_secret(settings, 'slack', 'app_token')}"
    return [*lines, f"  buttons         {clicks}"]


def _describe_http(http: HttpSettings) -> str:
    if not http.listen:
        return "off (http.listen not set)"
    tls = "TLS" if http.tls_cert else "plain HTTP (put a TLS proxy in front)"
    return f"listening on {http.listen}, {tls}, requests up to {http.max_body} bytes"


def _describe_ui(settings: Settings) -> str:
    """Who may read the status page at / (tfops/web/ui_auth.py decides the same way)."""
    http = settings.http
    if not http.listen:
        return "off (http.listen not set)"
    if not http.ui.enabled:
        return "off (http.ui.enabled: false)"
    ways = ["API tokens (login form or Bearer)"] if settings.api.tokens else []
    if http.ui.proxy_user_header:
        ways.append(f"the proxy's {http.ui.proxy_user_header} header")
    if ways:
        return f"at /, for {' or '.join(ways)}"
    host = http.listen.rpartition(":")[0].strip("[]")
    if host in ("localhost", "::1") or host.startswith("127."):
        return "at /, open to anyone on this machine (loopback, no login configured)"
    return "refused (403): no login configured and http.listen is not loopback"


def _describe_webhooks(settings: Settings) -> str:
    sources = settings.webhooks.sources
    if not sources:
        return "off (no webhook secret configured)"
    refs = {source: getattr(settings.webhooks, source) for source in sources}
    return "; ".join(
        f"{source} secret {_describe_source(settings, ref, 'secret')}" for source, ref in refs.items()
    )


def _describe_api(settings: Settings) -> str:
    if not settings.api.tokens:
        return "off (no token configured)"
    return "; ".join(
        f"{t.name} ({t.scope}) {_describe_source(settings, t, 'token')}" for t in settings.api.tokens
    )


def _describe_source(settings: Settings, section: Any, name: str) -> str:
    """Where one of tfops' own secrets comes from; an AWS one is read only by the checks."""
    for service in ("ssm", "secretsmanager"):
        reference = getattr(section, f"{name}_{service}", None)
        if reference:
            return f"from {service}:{reference}"
    return _describe_ref(settings, getattr(section, f"{name}_env"), getattr(section, f"{name}_file"))


def _describe_ref(settings: Settings, env_name: str | None, file: Path | None) -> str:
    """Where a secret comes from and whether it is there; never its value."""
    if env_name:
        return f"from ${env_name} ({'set' if settings._environ.get(env_name, '').strip() else 'NOT SET'})"
    if file:
        return f"file {file} ({'readable' if os.access(file, os.R_OK) else 'NOT READABLE'})"
    return "not configured"


def _describe_credentials(settings: Settings) -> str:
    repo, parts = settings.repo, []
    if repo.ssh_key_file:
        parts.append(f"ssh key {repo.ssh_key_file}" + ("" if repo.ssh_key_file.is_file() else " (MISSING)"))
    if repo.username:
        parts.append(f"user {repo.username}")
    if has_source(repo, "token"):
        parts.append(f"token {_describe_source(settings, repo, 'token')}")
    return ", ".join(parts) or "none configured (ssh agent and git defaults)"


def _describe_policy(policy: StackDefaults | StackEntry, defaults: StackDefaults | None = None) -> str:
    on_merge = policy.on_merge or (defaults.on_merge if defaults else None)
    on_drift = policy.on_drift or (defaults.on_drift if defaults else None)
    interval = policy.drift_interval
    if interval is None and defaults is not None:
        interval = defaults.drift_interval
    drift = f"drift check every {format_duration(interval)}" if interval else "no scheduled drift check"
    if isinstance(policy, StackEntry):
        rules = describe_rules(defaults or StackDefaults(), policy)
    else:
        rules = describe_rules(policy)
    return f"on merge {on_merge}, on drift {on_drift}, {drift}{rules}{_describe_windows(policy, defaults)}"


def _describe_windows(policy: StackDefaults | StackEntry, defaults: StackDefaults | None) -> str:
    """ ", windows (Europe/Berlin): deny 0 17 * * FRI for 64h [apply, remediate]", or ""."""
    windows = policy.windows if policy.windows is not None else (defaults.windows if defaults else ())
    zone = policy.timezone or (defaults.timezone if defaults else None) or "UTC"
    if not windows:
        return ""
    shown = "; ".join(
        f"{w.kind.value} {w.schedule} for {format_duration(w.duration)} "
        f"[{', '.join(a.value for a in w.actions)}]"
        for w in windows
    )
    return f", windows ({zone}): {shown}"


def _describe_entry(entry: StackEntry, defaults: StackDefaults) -> str:
    head = f"discover {entry.discover}" if entry.discover is not None else f"{entry.name}: {entry.path}"
    extras = [f"workspace {entry.workspace}"] if entry.workspace != "default" else []
    if entry.var_files:
        extras.append(f"var files {', '.join(entry.var_files)}")
    if entry.env:
        extras.append(f"env {', '.join(sorted(entry.env))}")  # names only: values may be secrets
    if entry.depends_on:
        extras.append(f"after {', '.join(entry.depends_on)}")
    return f"{head} ({_describe_policy(entry, defaults)}{''.join('; ' + extra for extra in extras)})"
