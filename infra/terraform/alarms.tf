# What an operator is paged for: the consumer falling behind (before retention loses records), writes throttled,
# the load balancer answering 5xx or losing healthy targets, a service short of tasks, the database short of
# storage or CPU. Alarms notify an SNS topic (alarm_topic_arn, or one created here); subscribe your pager to it.
resource "aws_sns_topic" "alarms" {
  count             = var.alarm_topic_arn == null ? 1 : 0
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
}

locals {
  alarm_actions = [var.alarm_topic_arn == null ? aws_sns_topic.alarms[0].arn : var.alarm_topic_arn]
  ecs_services = {
    api       = { name = aws_ecs_service.api.name, minimum = var.api_min_tasks }
    consumer  = { name = aws_ecs_service.consumer.name, minimum = var.consumer_count }
    dashboard = { name = aws_ecs_service.dashboard.name, minimum = var.dashboard_count }
  }
  target_groups = {
    api       = aws_lb_target_group.api.arn_suffix
    dashboard = aws_lb_target_group.dashboard.arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "consumer_behind" {
  alarm_name          = "${var.name}-consumer-behind"
  alarm_description   = "The oldest unread record is older than consumer_lag_alarm_s: consumers are stalled or too few; records older than the stream's retention are lost."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.events.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.consumer_lag_alarm_s * 1000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = concat(local.alarm_actions, [aws_appautoscaling_policy.consumer_out.arn])
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "writes_throttled" {
  alarm_name          = "${var.name}-writes-throttled"
  alarm_description   = "PutRecords throttled for 5 minutes: add shards (or use on-demand mode); the API's buffer fills, then it answers 503."
  namespace           = "AWS/Kinesis"
  metric_name         = "WriteProvisionedThroughputExceeded"
  dimensions          = { StreamName = aws_kinesis_stream.events.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "load_balancer_5xx" {
  for_each            = toset(["HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"])
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "More than alarm_5xx_per_minute 5xx answers a minute for 3 minutes (ELB: no healthy target, or a connection reset; Target: the API or dashboard failing)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = each.key
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.alarm_5xx_per_minute
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  for_each            = local.target_groups
  alarm_name          = "${var.name}-${each.key}-unhealthy-targets"
  alarm_description   = "A ${each.key} task fails its load balancer health check."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix, TargetGroup = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "tasks_missing" {
  for_each            = { for role, service in local.ecs_services : role => service if service.minimum > 0 }
  alarm_name          = "${var.name}-${each.key}-tasks-missing"
  alarm_description   = "Fewer ${each.key} tasks running than the minimum for 5 minutes (Container Insights)."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = aws_ecs_cluster.this.name, ServiceName = each.value.name }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 5
  threshold           = each.value.minimum
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "database_storage" {
  alarm_name          = "${var.name}-database-storage"
  alarm_description   = "Less than 10% of the database's allocated storage left (autoscaling stops at db_max_allocated_storage_gb)."
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.db_allocated_storage_gb * 1024 * 1024 * 1024 / 10
  comparison_operator = "LessThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "database_cpu" {
  alarm_name          = "${var.name}-database-cpu"
  alarm_description   = "Database CPU above 80% for 15 minutes: flushes slow down and the consumers fall behind."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
