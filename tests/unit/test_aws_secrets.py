"""Secret values read from SSM and Secrets Manager with real boto3 against the loopback AWS.

Every value stored here is a canary: whatever goes wrong, the error names the reference and
AWS's reason, and the canary appears neither in the error nor in anything logged.
"""

from __future__ import annotations

import json
import logging

import pytest
from test_aws_roles import READ_ROLE, clients_for, iam_user  # noqa: F401  (iam_user is a fixture)

from tfops.aws.clients import AwsClients, AwsEndpoint
from tfops.aws.roles import RoleAssumer, session_name
from tfops.aws.secrets import SecretReader, SecretReference, parse_reference
from tfops.errors import AwsSecretError, TerminalError

CANARY = "canary-db-password-5f1c2e"
API_KEY = "canary-api-key-9b7d41"


@pytest.fixture
def stored(aws):
    """The account holds one secret of each kind, all written as the daemon."""
    clients = clients_for(aws)
    ssm = clients.client("ssm")
    ssm.put_parameter(Name="/prod/db/password", Value=CANARY, Type="SecureString")
    ssm.put_parameter(Name="/prod/db/host", Value="db.internal", Type="String")
    ssm.put_parameter(Name="/prod/db/json", Value=json.dumps({"password": CANARY}), Type="SecureString")
    manager = clients.client("secretsmanager")
    manager.create_secret(
        Name="prod/api", SecretString=json.dumps({"key": API_KEY, "port": 8443, "nested": {"a": CANARY}})
    )
    manager.create_secret(Name="prod/plain", SecretString=CANARY)
    manager.create_secret(Name="prod/binary", SecretBinary=CANARY.encode())
    return clients


def test_ssm_parameters_and_secrets_manager_secrets_are_read_as_tfops_itself(stored):
    reader = SecretReader(stored)

    assert reader.read("ssm:/prod/db/password") == CANARY
    assert reader.read("secretsmanager:prod/api#key") == API_KEY
    assert reader.read("ssm:/prod/db/json#password") == CANARY
    assert reader.read("secretsmanager:prod/plain") == CANARY
    assert reader.read("secretsmanager:prod/api#key") == API_KEY
    assert reader.read(SecretReference("secretsmanager", "prod/api", "port")) == "8443"


def test_a_stacks_secrets_are_read_with_its_plan_role_and_one_secret_costs_one_call(stored):
    credentials = RoleAssumer(stored).credentials(READ_ROLE, session_name=session_name("network", 1))
    calls: list[str] = []
    stored.client("secretsmanager", credentials).meta.events.register(
        "provide-client-params.secretsmanager.GetSecretValue",
        lambda params, **_: calls.append(params["SecretId"]),
    )

    values = SecretReader(stored).read_all(
        {
            "TF_VAR_db_password": "ssm:/prod/db/password",
            "TF_VAR_api_key": "secretsmanager:prod/api#key",
            "TF_VAR_api_port": "secretsmanager:prod/api#port",
        },
        credentials,
    )

    assert values == {"TF_VAR_db_password": CANARY, "TF_VAR_api_key": API_KEY, "TF_VAR_api_port": "8443"}
    assert calls == ["prod/api"]


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("ssm:/prod/db/missing", "secret ssm:/prod/db/missing does not exist (ParameterNotFound"),
        (
            "secretsmanager:prod/missing",
            "secret secretsmanager:prod/missing does not exist (ResourceNotFoundException",
        ),
        (
            "secretsmanager:prod/api#absent",
            "secret secretsmanager:prod/api#absent: the JSON object has no key 'absent'",
        ),
        ("ssm:/prod/db/json#absent", "secret ssm:/prod/db/json#absent: the JSON object has no key 'absent'"),
        (
            "secretsmanager:prod/plain#key",
            "secret secretsmanager:prod/plain#key: the value is not a JSON object",
        ),
        ("ssm:/prod/db/password#key", "secret ssm:/prod/db/password#key: the value is not a JSON object"),
        ("secretsmanager:prod/api#nested", "key 'nested' holds a dict, not a string or number"),
        ("secretsmanager:prod/binary", "secret secretsmanager:prod/binary is binary (SecretBinary)"),
        ("vault:prod/db", "secret reference 'vault:prod/db' must start with 'ssm:' or 'secretsmanager:'"),
        ("/prod/db/password", "must start with 'ssm:' or 'secretsmanager:'"),
        ("ssm:", "secret reference 'ssm:' has no name"),
        ("secretsmanager:prod/api#", "secret reference 'secretsmanager:prod/api#' has no key after #"),
    ],
)
def test_a_secret_that_cannot_be_read_names_its_reference_never_its_value(stored, caplog, reference, says):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AwsSecretError) as failed:
        SecretReader(stored).read(reference)

    assert isinstance(failed.value, TerminalError)
    assert says in str(failed.value)
    assert "hint: " in str(failed.value)
    assert CANARY not in str(failed.value) + caplog.text
    assert API_KEY not in str(failed.value) + caplog.text


def test_read_all_stops_at_the_first_reference_it_cannot_read(stored):
    with pytest.raises(AwsSecretError, match="ssm:/prod/db/missing does not exist"):
        SecretReader(stored).read_all(
            {"TF_VAR_a": "ssm:/prod/db/password", "TF_VAR_b": "ssm:/prod/db/missing"}
        )


def test_a_secret_tfops_may_not_read_is_an_access_denial_naming_it(aws, stored, iam_user, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    # moto matches IAM actions, not resources, for these services: one service allowed, one not.
    environ = iam_user([{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}])
    reader = SecretReader(clients_for(aws, environ))

    assert reader.read("secretsmanager:prod/api#key") == API_KEY
    with pytest.raises(AwsSecretError) as denied:
        reader.read("ssm:/prod/db/password")

    assert str(denied.value).startswith("access to secret ssm:/prod/db/password denied (")
    assert "user/tfops is not authorized to perform: ssm:GetParameter" in str(denied.value)
    assert "hint: allow the identity that reads it" in str(denied.value)
    assert CANARY not in str(denied.value) + caplog.text


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("ssm:/prod/db/password", SecretReference("ssm", "/prod/db/password")),
        ("ssm:plain-name", SecretReference("ssm", "plain-name")),
        ("secretsmanager:prod/api#key", SecretReference("secretsmanager", "prod/api", "key")),
        (
            "secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/api-AbCdEf#key",
            SecretReference(
                "secretsmanager",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/api-AbCdEf",
                "key",
            ),
        ),
    ],
)
def test_a_reference_reads_back_as_it_was_written(text, reference):
    assert parse_reference(text) == reference
    assert str(reference) == text


def test_an_unreachable_endpoint_names_the_reference_and_the_connection_error():
    closed = AwsClients(
        AwsEndpoint(region="eu-west-1", endpoint_url="http://127.0.0.1:9"),
        {"AWS_ACCESS_KEY_ID": "AKIATFOPSDAEMON00001", "AWS_SECRET_ACCESS_KEY": "never-shown-secret"},
    )

    with pytest.raises(AwsSecretError) as unreachable:
        SecretReader(closed).read("secretsmanager:prod/api#key")

    assert str(unreachable.value).startswith(
        "cannot read secret secretsmanager:prod/api#key: EndpointConnectionError"
    )
    assert "hint: check the reading identity's credentials" in str(unreachable.value)
