"""tfops: GitOps for Terraform outside Kubernetes."""

__version__ = "0.1.0"
