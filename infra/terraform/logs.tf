resource "aws_cloudwatch_log_group" "service" {
  for_each          = toset(["api", "consumer", "dashboard", "migrate"])
  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}
