# Named for the settings they feed (README, "Configuration"); `service_environment` is the whole mapping.
output "service_environment" {
  description = "Settings for a fraudflow process outside ECS (a laptop with a VPN, a bastion; as the master user, for migrations), by variable name."
  value       = merge(local.stream_environment, local.migrate_environment)
}

output "FRAUDFLOW_STREAM" {
  description = "The Kinesis stream (reference design: KINESIS_STREAM / stream_name)."
  value       = aws_kinesis_stream.events.name
}

output "stream_arn" {
  description = "ARN of the Kinesis stream."
  value       = aws_kinesis_stream.events.arn
}

output "POSTGRES_HOST" {
  description = "RDS endpoint address (private)."
  value       = aws_db_instance.this.address
}

output "SECRETS_MANAGER_ID" {
  description = "ARN of the RDS-managed secret holding the database user and password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "api_keys_secret_arn" {
  description = "Secret to fill with FRAUDFLOW_API_KEYS (comma-separated)."
  value       = aws_secretsmanager_secret.api_keys.arn
}

output "admin_keys_secret_arn" {
  description = "Secret to fill with FRAUDFLOW_ADMIN_KEYS (comma-separated; for /admin routes only)."
  value       = aws_secretsmanager_secret.admin_keys.arn
}

output "dashboard_users_secret_arn" {
  description = "Secret to fill with FRAUDFLOW_DASHBOARD_USERS (user:password,...)."
  value       = aws_secretsmanager_secret.dashboard_users.arn
}

output "CHALICE_API_URL" {
  description = "Base URL of the scoring API, for clients and `fraudflow simulate`: api_hostname, which the certificate covers (point it at load_balancer_dns_name)."
  value       = "https://${var.api_hostname}"
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer: alias your API and dashboard host names to it."
  value       = aws_lb.this.dns_name
}

output "ecr_repository_url" {
  description = "Where to push the image (docker push <url>:<image_tag>)."
  value       = aws_ecr_repository.this.repository_url
}

output "ecs_cluster" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "migrate_command" {
  description = "Runs the schema migrations once (before the consumer and dashboard of a new release)."
  value = join(" ", [
    "aws ecs run-task --cluster", aws_ecs_cluster.this.name,
    "--launch-type FARGATE --task-definition", aws_ecs_task_definition.this["migrate"].family,
    "--network-configuration", "'awsvpcConfiguration={subnets=[${join(",", local.private_subnet_ids)}],securityGroups=[${aws_security_group.consumer.id}],assignPublicIp=DISABLED}'",
  ])
}

output "alarm_topic_arn" {
  description = "The SNS topic the alarms notify: subscribe your pager (email, PagerDuty, Opsgenie) to it."
  value       = local.alarm_actions[0]
}
