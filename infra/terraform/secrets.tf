# Secrets the operator fills in after `terraform apply` (values never pass through Terraform or its state):
#   aws secretsmanager put-secret-value --secret-id <api_keys_secret_arn> --secret-string 'key1,key2'
#   aws secretsmanager put-secret-value --secret-id <admin_keys_secret_arn> --secret-string 'admin-key'
#   aws secretsmanager put-secret-value --secret-id <dashboard_users_secret_arn> --secret-string 'ana:pass'
# ECS injects them as FRAUDFLOW_API_KEYS, FRAUDFLOW_ADMIN_KEYS and FRAUDFLOW_DASHBOARD_USERS when a task starts.
resource "aws_secretsmanager_secret" "api_keys" {
  #checkov:skip=CKV2_AWS_57:API keys are issued to clients, so rotation is a coordinated change (docs/deploy-aws.md), not a Lambda.
  name                    = "${var.name}/api-keys"
  description             = "FRAUDFLOW_API_KEYS: comma-separated keys accepted by the scoring API"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret" "admin_keys" {
  #checkov:skip=CKV2_AWS_57:admin keys are held by operators, so rotation is a coordinated change (docs/deploy-aws.md), not a Lambda.
  name                    = "${var.name}/admin-keys"
  description             = "FRAUDFLOW_ADMIN_KEYS: comma-separated keys for the API's /admin routes (client keys are refused there)"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret" "dashboard_users" {
  #checkov:skip=CKV2_AWS_57:dashboard passwords are handed to people, so rotation is a coordinated change (docs/deploy-aws.md), not a Lambda.
  name                    = "${var.name}/dashboard-users"
  description             = "FRAUDFLOW_DASHBOARD_USERS: user:password pairs for the dashboard's basic auth"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}
