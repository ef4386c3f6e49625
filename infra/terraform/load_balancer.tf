resource "aws_lb" "this" {
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = local.alb_idle_timeout_s

  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.alb_logs]
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; targets sit in private subnets that only its security group reaches.
  name                 = "${var.name}-api"
  port                 = local.api_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  # /readyz: models loaded and the stream ACTIVE; a task that cannot publish takes no traffic.
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "dashboard" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; targets sit in private subnets that only its security group reaches.
  name                 = "${var.name}-dashboard"
  port                 = local.dashboard_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  health_check {
    path    = "/healthz"
    matcher = "200"
  }

  # Dash callbacks of one page view go to the same task.
  stickiness {
    type    = "lb_cookie"
    enabled = true
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# Internal endpoints never answer the internet: metrics, readiness (model version, buffer depth), the API
# documents and the admin routes. The target groups' health checks reach the tasks directly, not through these
# rules; operators reach the rest from inside the VPC (ECS exec). A rule takes five path values at most.
resource "aws_lb_listener_rule" "internal_paths" {
  for_each     = { for index, paths in local.internal_paths : tostring(index + 1) => paths }
  listener_arn = aws_lb_listener.https.arn
  priority     = tonumber(each.key)

  condition {
    path_pattern {
      values = each.value
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"detail\":\"Not Found\"}"
      status_code  = "404"
    }
  }
}

# The dashboard is not open to the internet: only the allowed networks reach it (others fall through to the
# 403 rule below), and with dashboard_oidc the load balancer signs analysts in before forwarding.
resource "aws_lb_listener_rule" "dashboard" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  condition {
    host_header {
      values = [var.dashboard_hostname]
    }
  }

  condition {
    source_ip {
      values = local.dashboard_cidrs
    }
  }

  dynamic "action" {
    for_each = var.dashboard_oidc == null ? [] : [var.dashboard_oidc]
    content {
      type = "authenticate-oidc"
      authenticate_oidc {
        issuer                 = action.value.issuer
        authorization_endpoint = action.value.authorization_endpoint
        token_endpoint         = action.value.token_endpoint
        user_info_endpoint     = action.value.user_info_endpoint
        client_id              = action.value.client_id
        client_secret          = action.value.client_secret
      }
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.dashboard.arn
  }
}

resource "aws_lb_listener_rule" "dashboard_elsewhere" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 11

  condition {
    host_header {
      values = [var.dashboard_hostname]
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"detail\":\"Forbidden\"}"
      status_code  = "403"
    }
  }
}

resource "aws_lb_listener" "http_redirect" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

# --- access logs -----------------------------------------------------------------------------------------------

data "aws_elb_service_account" "this" {}

resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_144:access logs are kept in this region; replicate them only if your retention policy asks.
  #checkov:skip=CKV_AWS_18:this bucket holds access logs; logging its own access would recurse.
  #checkov:skip=CKV2_AWS_62:nothing consumes events from the access-log bucket.
  #checkov:skip=CKV_AWS_145:load balancer access logs support only SSE-S3 (AES256), not a KMS key.
  bucket_prefix = "${var.name}-alb-logs-"
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    sid       = "LoadBalancerWritesLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }

  statement {
    sid       = "HttpsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.alb_logs.arn, "${aws_s3_bucket.alb_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket     = aws_s3_bucket.alb_logs.id
  policy     = data.aws_iam_policy_document.alb_logs.json
  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}
