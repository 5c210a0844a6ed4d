output "config_id" {
  description = "ID of the service's config object."
  value       = demo_object.config.id
}

output "replica_names" {
  description = "Names of the replica objects."
  value       = demo_object.replica[*].name
}
