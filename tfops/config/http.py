"""``http:``: the daemon's HTTP server."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from tfops.config.fields import ConfigPath, Section


def _listen(value: str) -> str:
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("put an IPv6 address in brackets, such as [::1]:8080")
    return value


class HttpSettings(Section):
    """The daemon's HTTP server: health, metrics, webhooks, the API, Slack's HTTP mode. Off unless
    `listen` is set."""

    listen: Annotated[str, AfterValidator(_listen)] | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    max_body: Annotated[int, Field(gt=0)] = 1 << 20  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _cert_with_key(self) -> HttpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set both http.tls_cert and http.tls_key, or neither")
        return self
