terraform {
  required_providers {
    demo = {
      source  = "tfops/demo"
      version = "0.1.0"
    }
  }
}

# The cloud folder comes from TFOPS_DEMO_CLOUD (set per stack in tfops.yaml).
provider "demo" {}

variable "api_key" {
  description = "In real life: a TF_VAR_api_key from the VM's environment or a secret store."
  type        = string
  sensitive   = true
  default     = "demo-api-key-not-a-secret"
}

module "api" {
  source = "../../service"

  name             = "api"
  environment      = "demo"
  message          = "api v1"
  with_credentials = true
  api_key          = var.api_key
  tags = {
    team = "platform"
  }
}
