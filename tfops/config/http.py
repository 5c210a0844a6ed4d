"""``http:``: the daemon's HTTP server, and how its status page (``http.ui``) lets people in."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from tfops.config.durations import PositiveDuration
from tfops.config.fields import ConfigPath, Section

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def _listen(value: str) -> str:
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("put an IPv6 address in brackets, such as [::1]:8080")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name such as X-Forwarded-User")
    return value


class UiSettings(Section):
    """The read-only status page at `/` (tfops/web/ui.py). Who may read it: whoever presents an
    API token (login form or Bearer), or, only when `proxy_user_header` is set, whoever an auth
    proxy in front of tfops names in that header. Without either, only a loopback listener serves it."""

    enabled: bool = True
    # e.g. X-Forwarded-User from oauth2-proxy; trusted only when set: then every request that
    # reaches tfops must come through the proxy (listen on loopback behind it).
    proxy_user_header: Annotated[str, AfterValidator(_header_name)] | None = None
    # The key that signs session cookies; default: <data_dir>/ui-session.key, created (0600) at start.
    session_key_file: ConfigPath | None = None
    session_ttl: PositiveDuration = 12 * 3600.0


class HttpSettings(Section):
    """The daemon's HTTP server: health, metrics, webhooks, the API, Slack's HTTP mode, the status
    page. Off unless `listen` is set."""

    listen: Annotated[str, AfterValidator(_listen)] | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    max_body: Annotated[int, Field(gt=0)] = 1 << 20  # bytes; larger requests get 413
    ui: UiSettings = Field(default_factory=UiSettings)

    @model_validator(mode="after")
    def _cert_with_key(self) -> HttpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set both http.tls_cert and http.tls_key, or neither")
        return self
