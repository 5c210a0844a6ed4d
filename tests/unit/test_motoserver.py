"""The loopback AWS endpoint the AWS tests use answers the real boto3 client, and starts empty."""

from __future__ import annotations

import boto3


def test_the_loopback_aws_answers_boto3_and_each_test_starts_with_an_empty_account(aws):
    ssm = boto3.client(
        "ssm",
        endpoint_url=aws.url,
        region_name=aws.region,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
    )
    ssm.put_parameter(Name="/canary", Value="one", Type="SecureString")
    assert ssm.get_parameter(Name="/canary", WithDecryption=True)["Parameter"]["Value"] == "one"

    aws.reset()

    assert ssm.describe_parameters()["Parameters"] == []
