"""A test-only Terraform provider whose resources live in the AWS API (SSM parameters through boto3)."""
