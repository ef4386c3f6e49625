resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# One image, a role per task definition (see Dockerfile). `migrate` runs once per release (docs/deploy-aws.md).
locals {
  tasks = {
    api = {
      command     = local.api_command
      health      = local.api_health
      port        = local.api_port
      cpu         = var.api_cpu
      memory      = var.api_memory
      environment = [for k, v in local.api_environment : { name = k, value = v }]
      secrets = [
        { name = "FRAUDFLOW_API_KEYS", valueFrom = aws_secretsmanager_secret.api_keys.arn },
        { name = "FRAUDFLOW_ADMIN_KEYS", valueFrom = aws_secretsmanager_secret.admin_keys.arn },
        { name = "FRAUDFLOW_REDIS_AUTH_TOKEN", valueFrom = aws_secretsmanager_secret.feature_store_token.arn },
      ]
    }
    consumer = {
      command     = local.consumer_command
      health      = local.consumer_health
      port        = null
      cpu         = var.consumer_cpu
      memory      = var.consumer_memory
      environment = [for k, v in local.consumer_environment : { name = k, value = v }]
      secrets     = []
    }
    dashboard = {
      command     = local.dashboard_command
      health      = local.dashboard_health
      port        = local.dashboard_port
      cpu         = var.dashboard_cpu
      memory      = var.dashboard_memory
      environment = [for k, v in local.dashboard_environment : { name = k, value = v }]
      secrets     = [{ name = "FRAUDFLOW_DASHBOARD_USERS", valueFrom = aws_secretsmanager_secret.dashboard_users.arn }]
    }
    migrate = {
      command     = local.migrate_command
      health      = null
      port        = null
      cpu         = 256
      memory      = 512
      environment = [for k, v in merge({ AWS_REGION = var.aws_region }, local.migrate_environment) : { name = k, value = v }]
      secrets     = []
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = local.tasks
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root file system is read-only; /tmp (FRAUDFLOW_DATA_DIR in the image) is the task's scratch space.
  volume {
    name = "tmp"
  }

  # A task without a health check (the migration) leaves the key out rather than sending null.
  container_definitions = jsonencode([merge(
    {
      name                   = each.key
      image                  = local.image
      essential              = true
      command                = each.value.command
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      environment            = each.value.environment
      secrets                = each.value.secrets
      portMappings           = each.value.port == null ? [] : [{ containerPort = each.value.port, protocol = "tcp" }]
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      # No Linux capabilities: nothing here binds a low port or changes users.
      linuxParameters = { initProcessEnabled = true, capabilities = { drop = ["ALL"] } }
      # Graceful shutdown: the API flushes acknowledged events, the consumer flushes, checkpoints and releases.
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = each.key
        }
      }
    },
    {
      for key, value in {
        healthCheck = each.value.health == null ? null : {
          command     = each.value.health
          interval    = 15
          timeout     = 5
          retries     = 3
          startPeriod = 30
        }
      } : key => value if value != null
    },
  )])
}

resource "aws_ecs_service" "api" {
  name                              = "${var.name}-api"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this["api"].arn
  desired_count                     = var.api_min_tasks
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 60
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.api.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = local.api_port
  }

  # A release that never becomes healthy rolls back by itself (e.g. a bad model fails /healthz at start-up).
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }

  depends_on = [aws_lb_listener.https]
}

resource "aws_ecs_service" "consumer" {
  name            = "${var.name}-consumer"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.this["consumer"].arn
  desired_count   = var.consumer_count # the first apply; autoscaling owns it after
  launch_type     = "FARGATE"
  propagate_tags  = "SERVICE"

  # Leases move to the new tasks as the old ones release them on SIGTERM: at most one extra task at a time.
  deployment_maximum_percent         = 150
  deployment_minimum_healthy_percent = 50

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.consumer.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling (between consumer_count and consumer_max_count)
  }

}

resource "aws_ecs_service" "dashboard" {
  name                              = "${var.name}-dashboard"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this["dashboard"].arn
  desired_count                     = var.dashboard_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 60
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.dashboard.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.dashboard.arn
    container_name   = "dashboard"
    container_port   = local.dashboard_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.https]
}
