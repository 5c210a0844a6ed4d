"""tfops' AWS side, on boto3: roles per stack and phase (STS), secrets from SSM and Secrets
Manager, and who caused a drift (CloudTrail). Every call goes to `aws.endpoint_url` when set
(tests, LocalStack, a VPC endpoint). Credentials and secret values are never stored or logged."""
