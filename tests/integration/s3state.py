"""A Terraform S3 backend with a DynamoDB lock table, in moto's loopback AWS (tests only).

Real boto3 creates the bucket and the table; real Terraform 1.0.3 talks to them through its own
`endpoint` attributes. The `skip_*` attributes keep Terraform off the network beyond moto: no
STS GetCallerIdentity check, no EC2 metadata lookup, no region list.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

BUCKET = "tfops-state"
TABLE = "tfops-locks"


@dataclass(frozen=True)
class S3State:
    """A state bucket and lock table in the moto account behind `aws` (the conftest fixture)."""

    aws: Any  # motoserver.MotoEndpoint
    key: str = "stacks/app/terraform.tfstate"

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.aws.url,
            region_name=self.aws.region,
            aws_access_key_id=self.aws.access_key_id,
            aws_secret_access_key=self.aws.secret_access_key,
        )

    def create(self) -> S3State:
        self.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": self.aws.region}
        )
        self.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return self

    def settings(self) -> dict[str, Any]:
        """The backend's attributes, as Terraform 1.0.3's s3 backend names them."""
        return {
            "bucket": BUCKET,
            "key": self.key,
            "region": self.aws.region,
            "dynamodb_table": TABLE,
            "endpoint": self.aws.url,
            "dynamodb_endpoint": self.aws.url,
            "sts_endpoint": self.aws.url,
            "iam_endpoint": self.aws.url,
            "skip_credentials_validation": True,
            "skip_metadata_api_check": True,
            "skip_region_validation": True,
            "force_path_style": True,
        }

    def backend_block(self) -> str:
        """A `terraform { backend "s3" {...} }` block holding every setting (committed in the stack)."""
        body = "".join(f"    {name} = {json.dumps(value)}\n" for name, value in self.settings().items())
        return 'terraform {\n  backend "s3" {\n' + body + "  }\n}\n"

    def tfbackend(self) -> str:
        """The same settings as a `-backend-config` file."""
        return "".join(f"{name} = {json.dumps(value)}\n" for name, value in self.settings().items())

    def state(self) -> dict[str, Any] | None:
        """The state object Terraform wrote to the bucket, or None."""
        try:
            body = self.client("s3").get_object(Bucket=BUCKET, Key=self.key)["Body"].read()
        except self.client("s3").exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def hold_lock(self, *, who: str, operation: str = "OperationTypeApply") -> str:
        """Take the state lock as another Terraform would: the item Terraform itself writes."""
        lock_id = str(uuid.uuid4())
        info = {
            "ID": lock_id,
            "Operation": operation,
            "Info": "",
            "Who": who,
            "Version": "1.0.3",
            "Created": "2026-11-28T10:42:00.000000Z",
            "Path": f"{BUCKET}/{self.key}",
        }
        self.client("dynamodb").put_item(
            TableName=TABLE,
            Item={"LockID": {"S": f"{BUCKET}/{self.key}"}, "Info": {"S": json.dumps(info)}},
        )
        return lock_id

    def lock_items(self) -> list[dict[str, Any]]:
        return self.client("dynamodb").scan(TableName=TABLE)["Items"]


def resources_in(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """{address: attributes} of the managed resources in a state document."""
    found = {}
    for resource in (state or {}).get("resources", []):
        for instance in resource.get("instances", []):
            found[f"{resource['type']}.{resource['name']}"] = instance["attributes"]
    return found
