"""awsssm calls AWS only with its environment's credentials, and records each call."""

from __future__ import annotations

from awsprovider.provider import AwsSsmProvider, SsmParameter
from awsstack import read_record
from tf.iface import CreateContext, DeleteContext, ReadContext, UpdateContext
from tf.utils import Diagnostics

TYPE = "awsssm_parameter"


def configured(aws, environ, record):
    provider = AwsSsmProvider(environ)
    diags = Diagnostics()
    provider.configure_provider(
        diags, {"endpoint_url": aws.url, "region": aws.region, "record_file": str(record)}
    )
    return provider, diags


def test_without_credentials_in_its_environment_it_refuses_and_records_the_missing_key(aws, tmp_path):
    record = tmp_path / "record.jsonl"
    # Whatever ~/.aws or the test process holds, the provider looks only at the environ it was given.
    _, diags = configured(aws, {"AWS_REGION": aws.region}, record)

    assert diags.has_errors()
    assert [(entry["op"], entry["access_key_id"]) for entry in read_record(record)] == [("configure", None)]


def test_each_operation_is_recorded_with_the_key_it_used_and_read_sees_changes_made_in_aws(aws, tmp_path):
    record = tmp_path / "record.jsonl"
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAROLEPLAN0000001",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
    }
    provider, diags = configured(aws, environ, record)
    resource = SsmParameter(provider)
    state = resource.create(CreateContext(diags, TYPE), {"name": "/p", "value": "v1", "type": "String"})
    assert state is not None and state["arn"] and not diags.has_errors()

    provider.ssm().put_parameter(Name="/p", Value="by hand", Type="String", Overwrite=True)
    assert resource.read(ReadContext(diags, TYPE), state)["value"] == "by hand"
    resource.update(UpdateContext(diags, TYPE), state, {**state, "value": "v2"})
    resource.delete(DeleteContext(diags, TYPE), state)
    assert resource.read(ReadContext(diags, TYPE), state) is None

    entries = read_record(record)
    assert [entry["op"] for entry in entries] == ["configure", "create", "read", "update", "delete", "read"]
    assert {(entry["access_key_id"], entry["session_token"]) for entry in entries} == {
        ("AKIAROLEPLAN0000001", True)
    }
    assert entries[1]["resource"] == "/p"
