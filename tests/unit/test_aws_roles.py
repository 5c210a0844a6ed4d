"""A stack's role, assumed with real boto3 STS calls against the loopback AWS (moto's server).

tfops' own identity is what `aws.daemon_env()` gives it; the role's credentials are what a
Terraform process would get. STS calls are counted with botocore's own event hooks on the client
tfops uses, so the cache is seen from the outside.
"""

from __future__ import annotations

import json
import logging
import string
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfops.aws.clients import AwsClients, AwsEndpoint
from tfops.aws.roles import RoleAssumer, TemporaryCredentials, session_name
from tfops.errors import AwsRoleError, TerminalError

READ_ROLE = "arn:aws:iam::123456789012:role/tfops-read"
APPLY_ROLE = "arn:aws:iam::123456789012:role/tfops-apply"
STS_SESSION_NAME = set(string.ascii_letters + string.digits + "_+=,.@-")


class Clock:
    """The assumer's clock, moved on by the test instead of waiting an hour."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def clients_for(aws, environ: dict[str, str] | None = None) -> AwsClients:
    return AwsClients(AwsEndpoint(region=aws.region, endpoint_url=aws.url), environ or aws.daemon_env())


def count_assume_role_calls(clients: AwsClients) -> list[dict]:
    """Every AssumeRole request tfops' STS client sends, as botocore is about to send it."""
    calls: list[dict] = []
    clients.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: calls.append(dict(params))
    )
    return calls


def caller_arn(clients: AwsClients, credentials: TemporaryCredentials | None = None) -> str:
    return clients.client("sts", credentials).get_caller_identity()["Arn"]


def test_terraform_gets_the_roles_own_credentials_named_after_the_run_never_the_daemons(aws, caplog):
    caplog.set_level(logging.DEBUG)
    clients = clients_for(aws)
    name = session_name("network", 42)

    credentials = RoleAssumer(clients).credentials(READ_ROLE, session_name=name)

    assert name == "tfops-network-42"
    assert credentials.access_key_id != aws.access_key_id
    assert credentials.secret_access_key != aws.secret_access_key
    assert (
        caller_arn(clients, credentials)
        == "arn:aws:sts::123456789012:assumed-role/tfops-read/tfops-network-42"
    )
    env = credentials.env("eu-west-1")
    assert env == {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_SESSION_TOKEN": credentials.session_token,
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert set(credentials.env(None)) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert credentials.values() == {
        credentials.access_key_id,
        credentials.secret_access_key,
        credentials.session_token,
    }
    for shown in (repr(credentials), str(credentials), f"{credentials}", caplog.text):
        assert not any(value in shown for value in credentials.values())


def test_a_role_is_served_from_the_cache_while_valid_and_fetched_again_near_its_expiry(aws):
    clients = clients_for(aws)
    calls = count_assume_role_calls(clients)
    clock = Clock()
    assumer = RoleAssumer(clients, margin_seconds=300, clock=clock)
    name = session_name("network", 7)

    first = assumer.credentials(READ_ROLE, session_name=name, duration_seconds=3600)
    again = assumer.credentials(READ_ROLE, session_name=name, duration_seconds=3600)
    assert again is first
    assert len(calls) == 1

    other_phase = assumer.credentials(APPLY_ROLE, session_name=name)
    other_run = assumer.credentials(READ_ROLE, session_name=session_name("network", 8))
    with_external_id = assumer.credentials(READ_ROLE, session_name=name, external_id="tenant-1")
    assert len(calls) == 4
    assert len({c.access_key_id for c in (first, other_phase, other_run, with_external_id)}) == 4
    assert calls[-1]["ExternalId"] == "tenant-1"

    clock.now = first.expiration - timedelta(seconds=301)
    assert assumer.credentials(READ_ROLE, session_name=name) is first
    assert len(calls) == 4

    clock.now = first.expiration - timedelta(seconds=299)  # within the margin: too late to start a plan
    renewed = assumer.credentials(READ_ROLE, session_name=name)
    assert len(calls) == 5
    assert renewed.access_key_id != first.access_key_id


def test_runs_asking_for_the_same_role_at_once_make_one_sts_call(aws):
    clients = clients_for(aws)
    calls = count_assume_role_calls(clients)
    assumer = RoleAssumer(clients)
    start = threading.Barrier(6)
    got: list[TemporaryCredentials] = []

    def ask() -> None:
        start.wait()
        got.append(assumer.credentials(READ_ROLE, session_name="tfops-network-1"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(got) == 6
    assert len({c.access_key_id for c in got}) == 1
    assert len(calls) == 1


@pytest.fixture
def iam_user(aws) -> Iterator[Callable[[list[dict]], dict[str, str]]]:
    """`iam_user(statements)` makes tfops' own identity an IAM user with just those policy
    statements, and has moto enforce IAM (its `reset-auth`, the server side of
    INITIAL_NO_AUTH_ACTION_COUNT) until the test ends. Returns that identity's environ."""

    def as_user(statements: list[dict]) -> dict[str, str]:
        iam = clients_for(aws).client("iam")  # the daemon's identity, before IAM is enforced
        iam.create_user(UserName="tfops")
        key = iam.create_access_key(UserName="tfops")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_user_policy(UserName="tfops", PolicyName="tfops", PolicyDocument=json.dumps(policy))
        aws.enforce_iam(True)
        return {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": aws.region,
        }

    try:
        yield as_user
    finally:
        aws.enforce_iam(False)


@pytest.fixture
def enforced_iam(iam_user) -> dict[str, str]:
    """tfops' own identity may assume READ_ROLE and nothing else."""
    return iam_user([{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": READ_ROLE}])


def test_a_role_tfops_may_not_assume_fails_naming_the_role_and_awss_reason(aws, enforced_iam, caplog):
    caplog.set_level(logging.DEBUG)
    clients = clients_for(aws, enforced_iam)
    assumer = RoleAssumer(clients)

    with pytest.raises(AwsRoleError) as refused:
        assumer.credentials(APPLY_ROLE, session_name=session_name("network", 3))

    assert isinstance(refused.value, TerminalError)
    message = str(refused.value)
    assert message.startswith(f"cannot assume {APPLY_ROLE}: AccessDenied: ")
    assert "user/tfops is not authorized to perform: sts:AssumeRole" in message
    assert "hint: check the role's trust policy" in message
    assert refused.value.reason.startswith("AccessDenied: ")
    assert enforced_iam["AWS_SECRET_ACCESS_KEY"] not in message + caplog.text
    # The policy is what refused: the role it allows is assumed, and `check` says the same.
    assert assumer.credentials(READ_ROLE, session_name=session_name("network", 3)).access_key_id
    assert assumer.check(READ_ROLE) is None
    assert (assumer.check(APPLY_ROLE) or "").startswith(
        "AccessDenied: User: arn:aws:iam::123456789012:user/tfops"
    )


def test_tfops_identity_comes_from_the_environ_it_is_given_not_from_os_environ(
    aws, enforced_iam, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOSENVIRONNOTUSED1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "os-environ-secret-not-used")

    assert caller_arn(clients_for(aws, enforced_iam)) == "arn:aws:iam::123456789012:user/tfops"


def test_an_invalid_role_arn_is_refused_before_any_call_with_its_reason(aws):
    assumer = RoleAssumer(clients_for(aws))

    with pytest.raises(AwsRoleError, match=r"cannot assume tfops-read: ParamValidationError: .*RoleArn"):
        assumer.credentials("tfops-read", session_name="tfops-network-1")
    with pytest.raises(AwsRoleError, match=r"hint: check the role's trust policy .* and the role ARN"):
        assumer.credentials("tfops-read", session_name="tfops-network-1")
    assert "ParamValidationError" in (assumer.check("tfops-read") or "")


@pytest.mark.parametrize(
    ("stack", "run_id", "expected"),
    [
        ("network", 1, "tfops-network-1"),
        ("core/network eu west", 12, "tfops-core-network-eu-west-12"),
        ("x" * 100, 123456789, "tfops-" + "x" * (64 - 6 - 10) + "-123456789"),
        ("réseau", 5, "tfops-r-seau-5"),
        ("", 9, "tfops--9"),
    ],
)
def test_session_names_name_the_stack_and_run_within_sts_limits(stack, run_id, expected):
    assert session_name(stack, run_id) == expected


@given(stack=st.text(max_size=200), run_id=st.integers(min_value=0, max_value=2**63))
def test_any_stack_name_gives_a_session_name_sts_accepts_ending_with_the_run_id(stack, run_id):
    name = session_name(stack, run_id)

    assert 2 <= len(name) <= 64
    assert set(name) <= STS_SESSION_NAME
    assert name.startswith("tfops-")
    assert name.endswith(f"-{run_id}")


def test_sts_accepts_the_longest_session_name(aws):
    clients = clients_for(aws)
    name = session_name("a/very long stack name, with odd characters: é ü ☃ " * 3, 2**40)

    credentials = RoleAssumer(clients).credentials(READ_ROLE, session_name=name)

    assert len(name) == 64
    assert caller_arn(clients, credentials).endswith(f"/tfops-read/{name}")


def test_an_unreachable_endpoint_or_no_identity_fails_with_what_went_wrong(tmp_path, monkeypatch):
    # No instance metadata and no shared files on a test machine: the chain really finds nothing.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    closed = AwsEndpoint(region="eu-west-1", endpoint_url="http://127.0.0.1:9")
    keys = {"AWS_ACCESS_KEY_ID": "AKIATFOPSDAEMON00001", "AWS_SECRET_ACCESS_KEY": "never-shown-secret"}

    with pytest.raises(AwsRoleError) as unreachable:
        RoleAssumer(AwsClients(closed, keys)).credentials(READ_ROLE, session_name="tfops-network-1")
    nobody = RoleAssumer(AwsClients(closed, {})).check(READ_ROLE)

    assert f"cannot assume {READ_ROLE}: EndpointConnectionError: " in str(unreachable.value)
    assert "hint: tfops could not ask STS" in str(unreachable.value)
    assert "never-shown-secret" not in str(unreachable.value)
    assert nobody == "NoCredentialsError: Unable to locate credentials"
