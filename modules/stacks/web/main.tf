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

module "web" {
  source = "../../service"

  name        = "web"
  environment = "demo"
  replicas    = 2
  message     = "welcome to the demo"
}

output "replicas" {
  value = module.web.replica_names
}
