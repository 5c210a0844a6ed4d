# A "service" in the demo cloud: one config object, N replicas and, optionally,
# a credentials object holding a sensitive value. Every object carries the same tags.

terraform {
  required_providers {
    demo = {
      source = "tfops/demo"
    }
  }
}

locals {
  tags = merge(
    {
      service     = var.name
      environment = var.environment
      managed_by  = "tfops"
    },
    var.tags,
  )
}

resource "demo_object" "config" {
  name = "${var.name}-config"
  content = jsonencode({
    message  = var.message
    replicas = var.replicas
  })
  tags = local.tags
}

resource "demo_object" "replica" {
  count = var.replicas

  name    = "${var.name}-replica-${count.index}"
  content = "replica ${count.index} of ${var.name}: ${var.message}"
  tags    = local.tags
}

resource "demo_object" "credentials" {
  count = var.with_credentials ? 1 : 0

  name    = "${var.name}-credentials"
  content = "credentials for ${var.name}"
  secret  = var.api_key
  tags    = local.tags
}
