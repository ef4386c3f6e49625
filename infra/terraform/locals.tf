locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  vpc_id             = var.create_vpc ? aws_vpc.this[0].id : var.existing_vpc_id
  public_subnet_ids  = var.create_vpc ? aws_subnet.public[*].id : var.existing_public_subnet_ids
  private_subnet_ids = var.create_vpc ? aws_subnet.private[*].id : var.existing_private_subnet_ids

  image = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"

  # The load balancer's nodes are in the VPC: forwarded client addresses are trusted from there only, so a
  # client cannot forge the address the API logs.
  vpc_cidr_block = var.create_vpc ? var.vpc_cidr : data.aws_vpc.existing[0].cidr_block

  # Ports the image serves (see Dockerfile); the health checks probe them from inside the task.
  api_port       = 8000
  dashboard_port = 8050

  # The settings every service reads (names as in fraudflow/config.py; tests/test_terraform.py checks them).
  stream_environment = {
    AWS_REGION       = var.aws_region
    FRAUDFLOW_STREAM = aws_kinesis_stream.events.name
    FRAUDFLOW_ENV    = "production"
  }
  # Every database client verifies the server: TLS against the Amazon RDS authorities shipped in the image
  # (fraudflow/db/rds-ca-bundle.pem) and the endpoint's name. rds.force_ssl guarantees encryption, not the peer.
  database_location = {
    POSTGRES_HOST        = aws_db_instance.this.address
    POSTGRES_PORT        = tostring(aws_db_instance.this.port)
    POSTGRES_DB          = aws_db_instance.this.db_name
    FRAUDFLOW_DB_SSLMODE = "verify-full"
  }
  # The master user (its secret) is for migrations only; the consumer, the dashboard and the API log in as
  # their own users (created by migrations 0007 and 0013 with the writer, reader and policy roles) through IAM
  # database authentication. The API reads its rules and lists there (and changes them on its admin routes).
  migrate_environment = merge(local.database_location, {
    SECRETS_MANAGER_ID = aws_db_instance.this.master_user_secret[0].secret_arn
  })
  database_users = { consumer = "fraudflow_consumer", dashboard = "fraudflow_dashboard", api = "fraudflow_api" }
  # The API reaches the feature store over TLS (rediss); its token comes from Secrets Manager (ecs.tf).
  api_environment = merge(local.stream_environment, local.database_location, {
    POSTGRES_USER           = local.database_users.api
    FRAUDFLOW_DB_IAM_AUTH   = "true"
    FRAUDFLOW_DELIVERY_MODE = var.delivery_mode
    FRAUDFLOW_REDIS_URL     = "rediss://${aws_elasticache_replication_group.feature_store.primary_endpoint_address}:${local.feature_store_port}/0"
  })
  feature_store_port = 6379
  consumer_environment = merge(local.stream_environment, local.database_location, {
    POSTGRES_USER = local.database_users.consumer, FRAUDFLOW_DB_IAM_AUTH = "true"
  })
  dashboard_environment = merge(local.stream_environment, local.database_location, {
    POSTGRES_USER = local.database_users.dashboard, FRAUDFLOW_DB_IAM_AUTH = "true"
  })

  # Who reaches the dashboard (load_balancer.tf): the allowed networks, else the VPC alone.
  dashboard_cidrs = length(var.dashboard_allowed_cidrs) > 0 ? var.dashboard_allowed_cidrs : [var.vpc_cidr]

  # Paths the load balancer answers 404 for (load_balancer.tf), in groups of at most five.
  # /labels takes chargebacks from systems inside the VPC, with an admin key, like /admin/*.
  internal_paths = [["/metrics", "/readyz", "/openapi.json", "/docs*", "/redoc*"], ["/admin/*", "/labels"]]

  # The load balancer keeps idle connections this long; the API keeps them longer (--timeout-keep-alive), so
  # the load balancer never reuses a connection uvicorn has just closed (an intermittent 502).
  alb_idle_timeout_s = 60

  # Container commands (tests/test_terraform.py parses them with the real CLI).
  api_command       = ["uvicorn", "api.main:app", "--http", "api.protocol:BoundedHttpTools", "--no-access-log", "--host", "0.0.0.0", "--port", "8000", "--no-server-header", "--timeout-graceful-shutdown", "20", "--timeout-keep-alive", "75", "--forwarded-allow-ips", local.vpc_cidr_block]
  consumer_command  = ["fraudflow", "consume", "--metrics-port", "9100", "--emf-interval", "60"]
  dashboard_command = ["fraudflow", "dashboard", "--host", "0.0.0.0", "--port", "8050"]
  migrate_command   = ["fraudflow", "db", "migrate"]

  api_health       = ["CMD", "fraudflow", "healthcheck", "--url", "http://127.0.0.1:8000/healthz"]
  consumer_health  = ["CMD", "fraudflow", "healthcheck", "--url", "http://127.0.0.1:9100/healthz"]
  dashboard_health = ["CMD", "fraudflow", "healthcheck", "--url", "http://127.0.0.1:8050/healthz"]
}
