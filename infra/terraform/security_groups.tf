# Who may talk to whom: clients -> ALB -> API/dashboard; API (rules and lists), consumer, dashboard, migrate ->
# PostgreSQL; tasks -> AWS APIs.
resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "fraudflow load balancer: HTTPS from clients, to the API and dashboard tasks"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.allowed_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "alb_http_redirect" {
  #checkov:skip=CKV_AWS_260:port 80 only answers a 301 redirect to HTTPS (aws_lb_listener.http_redirect); no traffic is served on it.
  for_each          = toset(var.allowed_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from clients, answered only with a redirect to HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the API tasks"
  referenced_security_group_id = aws_security_group.api.id
  ip_protocol                  = "tcp"
  from_port                    = local.api_port
  to_port                      = local.api_port
}

resource "aws_vpc_security_group_egress_rule" "alb_to_dashboard" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the dashboard tasks"
  referenced_security_group_id = aws_security_group.dashboard.id
  ip_protocol                  = "tcp"
  from_port                    = local.dashboard_port
  to_port                      = local.dashboard_port
}

resource "aws_security_group" "api" {
  name        = "${var.name}-api"
  description = "fraudflow API tasks: from the load balancer; to PostgreSQL, the feature store and AWS APIs"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "From the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.api_port
  to_port                      = local.api_port
}

resource "aws_security_group" "consumer" {
  name        = "${var.name}-consumer"
  description = "fraudflow consumer tasks: no inbound; to PostgreSQL and AWS APIs"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "dashboard" {
  name        = "${var.name}-dashboard"
  description = "fraudflow dashboard tasks: from the load balancer; to PostgreSQL and AWS APIs"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "dashboard_from_alb" {
  security_group_id            = aws_security_group.dashboard.id
  description                  = "From the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.dashboard_port
  to_port                      = local.dashboard_port
}

# Every task reaches AWS APIs (Kinesis, Secrets Manager, ECR, CloudWatch Logs) over HTTPS.
resource "aws_vpc_security_group_egress_rule" "tasks_to_aws_apis" {
  for_each          = { api = aws_security_group.api.id, consumer = aws_security_group.consumer.id, dashboard = aws_security_group.dashboard.id }
  security_group_id = each.value
  description       = "HTTPS to AWS APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_database" {
  for_each                     = { api = aws_security_group.api.id, consumer = aws_security_group.consumer.id, dashboard = aws_security_group.dashboard.id }
  security_group_id            = each.value
  description                  = "PostgreSQL"
  referenced_security_group_id = aws_security_group.database.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "fraudflow PostgreSQL: from the API, consumer and dashboard tasks (migrations run as a consumer-group task)"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_tasks" {
  for_each                     = { api = aws_security_group.api.id, consumer = aws_security_group.consumer.id, dashboard = aws_security_group.dashboard.id }
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the ${each.key} tasks"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "feature_store" {
  name        = "${var.name}-feature-store"
  description = "fraudflow online feature store (Valkey): from the API tasks only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "feature_store_from_api" {
  security_group_id            = aws_security_group.feature_store.id
  description                  = "Valkey from the API tasks"
  referenced_security_group_id = aws_security_group.api.id
  ip_protocol                  = "tcp"
  from_port                    = local.feature_store_port
  to_port                      = local.feature_store_port
}

resource "aws_vpc_security_group_egress_rule" "api_to_feature_store" {
  security_group_id            = aws_security_group.api.id
  description                  = "Valkey (the online feature store)"
  referenced_security_group_id = aws_security_group.feature_store.id
  ip_protocol                  = "tcp"
  from_port                    = local.feature_store_port
  to_port                      = local.feature_store_port
}
