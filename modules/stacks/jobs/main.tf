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

locals {
  jobs = {
    backup  = "0 3 * * *"
    reports = "0 8 * * 1"
  }
}

resource "demo_object" "job" {
  for_each = local.jobs

  name    = "job-${each.key}"
  content = "schedule: ${each.value}"
  tags = {
    kind = "cronjob"
  }
}
