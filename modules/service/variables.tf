variable "name" {
  description = "Service name; prefixes every object."
  type        = string
}

variable "environment" {
  description = "Environment tag, e.g. demo, staging, prod."
  type        = string
}

variable "replicas" {
  description = "How many replica objects to run."
  type        = number
  default     = 1
}

variable "message" {
  description = "What the service says; part of every object's content."
  type        = string
  default     = "hello"
}

variable "with_credentials" {
  description = "Create a credentials object holding api_key."
  type        = bool
  default     = false
}

variable "api_key" {
  description = "Secret stored in the credentials object; never shown by Terraform or tfops."
  type        = string
  default     = null
  sensitive   = true
}

variable "tags" {
  description = "Extra tags merged into the defaults."
  type        = map(string)
  default     = {}
}
