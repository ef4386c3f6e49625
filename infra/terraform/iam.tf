# Least privilege, one role per service and purpose:
#   execution roles (ECS agent): pull the image, write logs, read the secrets injected into that service;
#   task roles (the code): the API writes to the stream, the consumer reads it; the consumer and the dashboard
#   log in to the database as their own users (rds-db:connect, IAM tokens), and only the migration task reads
#   the master user's secret. KMS use is scoped to our key, through the service that needs it.
locals {
  services = toset(["api", "consumer", "dashboard", "migrate"])
  injected_secrets = {
    api = [
      aws_secretsmanager_secret.api_keys.arn,
      aws_secretsmanager_secret.admin_keys.arn,
      aws_secretsmanager_secret.feature_store_token.arn,
    ]
    consumer  = []
    dashboard = [aws_secretsmanager_secret.dashboard_users.arn]
    migrate   = []
  }
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- execution roles -------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "execution" {
  for_each = local.services

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this action has no resource-level permissions
  }

  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service[each.key].arn}:*"]
  }

  # The image's layers (through ECR) and, where the service has injected secrets, those (through Secrets
  # Manager): the key is usable through these services only.
  statement {
    sid       = "DecryptImageAndSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = concat(
        ["ecr.${var.aws_region}.amazonaws.com"],
        length(local.injected_secrets[each.key]) > 0 ? ["secretsmanager.${var.aws_region}.amazonaws.com"] : [],
      )
    }
  }

  dynamic "statement" {
    for_each = length(local.injected_secrets[each.key]) > 0 ? [1] : []
    content {
      sid       = "InjectSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.injected_secrets[each.key]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each           = local.services
  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.services
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

# --- task roles ------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "api" {
  statement {
    sid       = "PublishScoredEvents"
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:DescribeStream"]
    resources = [aws_kinesis_stream.events.arn]
  }

  statement {
    sid       = "EncryptRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${var.aws_region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "ConnectAsApi"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${var.aws_region}:${local.account_id}:dbuser:${aws_db_instance.this.resource_id}/${local.database_users.api}"]
  }
}

data "aws_iam_policy_document" "consumer" {
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
      "kinesis:DescribeStreamSummary",
      "kinesis:DescribeStream",
    ]
    resources = [aws_kinesis_stream.events.arn]
  }

  statement {
    sid       = "DecryptRecords"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${var.aws_region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "ConnectAsConsumer"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${var.aws_region}:${local.account_id}:dbuser:${aws_db_instance.this.resource_id}/${local.database_users.consumer}"]
  }
}

# The dashboard logs in as its read-only user, nothing else.
data "aws_iam_policy_document" "dashboard" {
  statement {
    sid       = "ConnectAsDashboard"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${var.aws_region}:${local.account_id}:dbuser:${aws_db_instance.this.resource_id}/${local.database_users.dashboard}"]
  }
}

# The migration task is the only master-user client.
data "aws_iam_policy_document" "database_client" {
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.this.master_user_secret[0].secret_arn]
  }

  statement {
    sid       = "DecryptDatabaseSecret"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.aws_region}.amazonaws.com"]
    }
  }
}

locals {
  task_policies = {
    api       = data.aws_iam_policy_document.api.json
    consumer  = data.aws_iam_policy_document.consumer.json
    dashboard = data.aws_iam_policy_document.dashboard.json
    migrate   = data.aws_iam_policy_document.database_client.json
  }
}

resource "aws_iam_role" "task" {
  for_each           = local.services
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "task" {
  for_each = local.services
  role     = aws_iam_role.task[each.key].id
  policy   = local.task_policies[each.key]
}
