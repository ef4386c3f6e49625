# The online feature store: a Valkey replication group (primary and a replica in another zone), private,
# encrypted at rest with our key and in transit, reached by the API tasks alone with an auth token.
# Cluster mode stays off: the feature script touches a batch's users, devices and IPs in one call, which a
# cluster would refuse across hash slots (docs/operations.md: sizing).
#
# ElastiCache takes the auth token when the group is created, so Terraform generates it: unlike the other
# secrets it is in the Terraform state (keep the state encrypted and private). The API reads it from
# Secrets Manager (FRAUDFLOW_REDIS_AUTH_TOKEN).
resource "random_password" "feature_store" {
  length  = 64
  special = false # ElastiCache tokens allow only some symbols: letters and digits are always accepted
}

resource "aws_secretsmanager_secret" "feature_store_token" {
  #checkov:skip=CKV2_AWS_57:the token is the replication group's AUTH token: rotating it is an ElastiCache change (docs/deploy-aws.md), not a Lambda.
  name                    = "${var.name}/feature-store-token"
  description             = "FRAUDFLOW_REDIS_AUTH_TOKEN: the online feature store's AUTH token"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "feature_store_token" {
  secret_id     = aws_secretsmanager_secret.feature_store_token.id
  secret_string = random_password.feature_store.result
}

resource "aws_elasticache_subnet_group" "feature_store" {
  name       = "${var.name}-features"
  subnet_ids = local.private_subnet_ids
}

resource "aws_elasticache_replication_group" "feature_store" {
  replication_group_id       = "${var.name}-features"
  description                = "fraudflow online feature store (behaviour features)"
  engine                     = "valkey"
  engine_version             = var.feature_store_engine_version
  node_type                  = var.feature_store_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = local.feature_store_port
  subnet_group_name          = aws_elasticache_subnet_group.feature_store.name
  security_group_ids         = [aws_security_group.feature_store.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.feature_store.result
  auto_minor_version_upgrade = true
  # A day of snapshots: the state can also be rebuilt from fraud_predictions (fraudflow features rebuild).
  snapshot_retention_limit = 1
  maintenance_window       = "sun:05:00-sun:06:00"
  snapshot_window          = "03:00-04:00"
}
