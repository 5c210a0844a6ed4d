"""``awsssm``: a test Terraform provider whose one resource is an SSM parameter, through boto3.

Test-only (it lives under tests/, served by ``python -m awsprovider.provider`` from the mirror's
launcher). It uses ONLY the credentials in its own process environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), never a profile or config file, so the
identity it calls AWS with is exactly the one tfops gave Terraform. Every operation appends a
JSON line ``{"op", "access_key_id", "resource", "session_token", "pid"}`` to the record file
(provider attribute ``record_file`` or ``$TFOPS_TEST_AWS_RECORD``): tests assert from it which
identity each Terraform phase used. Reads return the real value, so a change made in AWS by
someone else is drift in ``terraform plan``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from tf import runner
from tf.iface import (
    Config,
    CreateContext,
    DataSource,
    DeleteContext,
    ImportContext,
    PlanContext,
    Provider,
    ReadContext,
    Resource,
    State,
    UpdateContext,
)
from tf.schema import Attribute, Schema
from tf.types import String
from tf.utils import Diagnostics

# The demo provider's process plumbing: SIGINT/SIGTERM handling, a writable HOME for tf's
# certificate cache, and leaving when Terraform is gone. Same needs, one implementation.
from tfops.demo.provider import _ensure_writable_home, _exit_when_orphaned, _interrupted, _on_sigterm

FULL_NAME = "registry.terraform.io/tfops-test/awsssm"
MODEL_PREFIX = "awsssm_"
RECORD_ENV_VAR = "TFOPS_TEST_AWS_RECORD"
CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _setting(configured: Any, environ: Mapping[str, str], *names: str) -> str | None:
    if isinstance(configured, str) and configured:
        return configured
    return next((environ[name] for name in names if environ.get(name)), None)


class AwsSsmProvider(Provider):
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._record_file: str | None = None
        self._client: Any = None

    @property
    def access_key_id(self) -> str | None:
        return self._environ.get("AWS_ACCESS_KEY_ID") or None

    def record(self, op: str, resource: str | None = None) -> None:
        """One JSON line per operation; one write with O_APPEND, so parallel processes never interleave."""
        path = self._record_file or self._environ.get(RECORD_ENV_VAR)
        if not path:
            return
        line = {
            "op": op,
            "access_key_id": self.access_key_id,
            "resource": resource,
            "session_token": bool(self._environ.get("AWS_SESSION_TOKEN")),
            "pid": os.getpid(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    def full_name(self) -> str:
        return FULL_NAME

    def get_model_prefix(self) -> str:
        return MODEL_PREFIX

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return Schema(
            version=0,
            attributes=[
                Attribute(
                    "endpoint_url", String(), optional=True, description="Defaults to $AWS_ENDPOINT_URL."
                ),
                Attribute("region", String(), optional=True, description="Defaults to $AWS_REGION."),
                Attribute(
                    "record_file", String(), optional=True, description=f"Defaults to ${RECORD_ENV_VAR}."
                ),
            ],
        )

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        pass

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        self._record_file = _setting(config.get("record_file"), self._environ, RECORD_ENV_VAR)
        self.record("configure")
        missing = [name for name in CREDENTIAL_NAMES if not self._environ.get(name)]
        if missing:
            diags.add_error("No AWS credentials", f"The provider's environment lacks {', '.join(missing)}.")
            return
        region = _setting(config.get("region"), self._environ, "AWS_REGION", "AWS_DEFAULT_REGION")
        session = boto3.session.Session(
            aws_access_key_id=self._environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self._environ["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self._environ.get("AWS_SESSION_TOKEN") or None,
            region_name=region or "us-east-1",
        )
        endpoint = _setting(config.get("endpoint_url"), self._environ, "AWS_ENDPOINT_URL")
        self._client = session.client("ssm", endpoint_url=endpoint)

    def ssm(self) -> Any:
        if self._client is None:
            raise RuntimeError("the awsssm provider was used before it was configured")
        return self._client

    def get_data_sources(self) -> list[type[DataSource]]:
        return []

    def get_resources(self) -> list[type[Resource]]:
        return [SsmParameter]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _aws_error(diags: Diagnostics, what: str, exc: Exception) -> None:
    diags.add_error(f"SSM {what} failed", f"{type(exc).__name__}: {exc}")


class SsmParameter(Resource):
    """``awsssm_parameter``: one SSM parameter; ``id`` is its name, ``arn`` its ARN."""

    def __init__(self, provider: AwsSsmProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "parameter"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="An SSM parameter.",
            attributes=[
                Attribute("name", String(), required=True, requires_replace=True),
                Attribute("value", String(), required=True),
                Attribute(
                    "type", String(), optional=True, computed=True, default="String", requires_replace=True
                ),
                Attribute("id", String(), computed=True),
                Attribute("arn", String(), computed=True),
            ],
        )

    def _fetch(self, name: str) -> State | None:
        try:
            answer = self.provider.ssm().get_parameter(Name=name, WithDecryption=True)
        except ClientError as exc:
            if _error_code(exc) == "ParameterNotFound":
                return None
            raise
        parameter = answer["Parameter"]
        return {
            "name": name,
            "value": parameter["Value"],
            "type": parameter["Type"],
            "id": name,
            "arn": parameter.get("ARN"),
        }

    def _put(self, state: State, *, overwrite: bool) -> State:
        self.provider.ssm().put_parameter(
            Name=state["name"], Value=state["value"], Type=state.get("type") or "String", Overwrite=overwrite
        )
        return self._fetch(state["name"]) or state

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        self.provider.record("create", planned["name"])
        try:
            return self._put(planned, overwrite=False)
        except (ClientError, BotoCoreError) as exc:
            _aws_error(ctx.diagnostics, "PutParameter", exc)
            return None

    def read(self, ctx: ReadContext, current: State) -> State | None:
        self.provider.record("read", current["name"])
        try:
            return self._fetch(current["name"])
        except (ClientError, BotoCoreError) as exc:
            _aws_error(ctx.diagnostics, "GetParameter", exc)
            return current

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State | None:
        # Terraform asks the provider to plan updates only (tf plans creates without us).
        self.provider.record("plan", planned.get("name"))
        return planned

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        self.provider.record("update", planned["name"])
        try:
            return self._put(planned, overwrite=True)
        except (ClientError, BotoCoreError) as exc:
            _aws_error(ctx.diagnostics, "PutParameter", exc)
            return None

    def delete(self, ctx: DeleteContext, current: State) -> None:
        self.provider.record("delete", current["name"])
        try:
            self.provider.ssm().delete_parameter(Name=current["name"])
        except ClientError as exc:
            if _error_code(exc) != "ParameterNotFound":
                _aws_error(ctx.diagnostics, "DeleteParameter", exc)
        except BotoCoreError as exc:
            _aws_error(ctx.diagnostics, "DeleteParameter", exc)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        self.provider.record("import", id)
        try:
            state = self._fetch(id)
        except (ClientError, BotoCoreError) as exc:
            _aws_error(ctx.diagnostics, "GetParameter", exc)
            return None
        if state is None:
            ctx.diagnostics.add_error("Parameter not found", f"No SSM parameter named {id!r}.")
        return state


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, lambda _signum, _frame: _interrupted.set())
    signal.signal(signal.SIGTERM, _on_sigterm)
    _ensure_writable_home()
    _exit_when_orphaned()
    runner.run_provider(AwsSsmProvider(), argv)


if __name__ == "__main__":
    main()
