variable "name" {
  description = "Prefix for every resource name."
  type        = string
  default     = "fraudflow"
}

variable "aws_region" {
  description = "AWS region (the services' AWS_REGION)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- network ---------------------------------------------------------------------------------------------------

variable "create_vpc" {
  description = "Create a VPC (public subnets for the load balancer, private ones for tasks and RDS, one NAT gateway). Set false to use existing_* instead."
  type        = bool
  default     = true
}

variable "availability_zones" {
  description = "The two zones of the created VPC's subnets (named, so the layout never moves when AWS adds a zone)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "availability_zones must name exactly two zones of aws_region."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the created VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "existing_vpc_id" {
  description = "VPC to deploy into when create_vpc is false."
  type        = string
  default     = null
}

variable "existing_public_subnet_ids" {
  description = "Subnets for the load balancer when create_vpc is false (two or more availability zones)."
  type        = list(string)
  default     = []
}

variable "existing_private_subnet_ids" {
  description = "Subnets for tasks and RDS when create_vpc is false (two or more availability zones, with a route to AWS APIs)."
  type        = list(string)
  default     = []
}

variable "allowed_ingress_cidrs" {
  description = "Client networks allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --- Kinesis ---------------------------------------------------------------------------------------------------

variable "kinesis_stream_mode" {
  description = "PROVISIONED (kinesis_shard_count shards) or ON_DEMAND."
  type        = string
  default     = "PROVISIONED"

  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.kinesis_stream_mode)
    error_message = "kinesis_stream_mode must be PROVISIONED or ON_DEMAND."
  }
}

variable "kinesis_shard_count" {
  description = "Shards of a PROVISIONED stream: each takes 1 MB/s or 1,000 records/s in and 2 MB/s out."
  type        = number
  default     = 4
}

variable "kinesis_retention_hours" {
  description = "How long records stay readable: the longest consumer outage you can recover from without loss (72 h covers a weekend)."
  type        = number
  default     = 72

  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760
    error_message = "kinesis_retention_hours must be between 24 and 8760."
  }
}

# --- PostgreSQL (RDS) ------------------------------------------------------------------------------------------

variable "db_engine_version" {
  description = "RDS PostgreSQL major version (minor versions are upgraded by AWS: a pinned minor would plan a downgrade after each)."
  type        = string
  default     = "16"
}

variable "feature_store_node_type" {
  description = "ElastiCache node type of the online feature store (docs/operations.md: about 1 GB per million active users)."
  type        = string
  default     = "cache.t4g.small"
}

variable "feature_store_engine_version" {
  description = "Valkey engine version of the online feature store."
  type        = string
  default     = "8.0"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage; storage autoscaling grows it up to db_max_allocated_storage_gb."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage_gb" {
  description = "Ceiling for storage autoscaling."
  type        = number
  default     = 500
}

variable "db_multi_az" {
  description = "A standby in a second availability zone (failover in one to two minutes)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Automated backup (point-in-time recovery) window."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database until this is turned off."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Skip the snapshot taken when the database is deleted (keep false outside throwaway stacks)."
  type        = bool
  default     = false
}

# --- services --------------------------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the fraudflow image in the ECR repository (tags are immutable: push a new tag per release)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener (covering the API and dashboard host names)."
  type        = string
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "api_hostname" {
  description = "Host name clients call the API at, covered by certificate_arn (e.g. api.example.com); CHALICE_API_URL is built from it. The load balancer's own DNS name is not covered by the certificate."
  type        = string
}

variable "dashboard_hostname" {
  description = "Host name routed to the dashboard (everything else goes to the API), e.g. dashboard.example.com."
  type        = string
}

variable "waf_rate_limit" {
  description = "Requests a client address may make in any 5 minutes (API and dashboard together) before the WAF blocks it for a while. Size it above your busiest legitimate caller."
  type        = number
  default     = 20000
}

variable "dashboard_allowed_cidrs" {
  description = "Networks the dashboard answers (the load balancer answers 403 to others). Empty: the VPC's own range only (a VPN or a bastion). The analysts' office or VPN ranges, never 0.0.0.0/0 without dashboard_oidc."
  type        = list(string)
  default     = []
}

variable "dashboard_oidc" {
  description = "Sign-in in front of the dashboard, done by the load balancer (authenticate-oidc) before any request reaches it: your identity provider's issuer, endpoints, client id and client secret (the load balancer's API takes the secret itself, so it is in the Terraform state: keep the state encrypted). Null: the allow-list and basic auth only."
  type = object({
    issuer                 = string
    authorization_endpoint = string
    token_endpoint         = string
    user_info_endpoint     = string
    client_id              = string
    client_secret          = string
  })
  default   = null
  sensitive = true
}

variable "delivery_mode" {
  description = "FRAUDFLOW_DELIVERY_MODE: ack (answer after Kinesis accepted the event) or async."
  type        = string
  default     = "ack"

  validation {
    condition     = contains(["ack", "async"], var.delivery_mode)
    error_message = "delivery_mode must be ack or async."
  }
}

variable "api_cpu" {
  description = "CPU units per API task (1024 = one vCPU; each task runs one uvicorn worker)."
  type        = number
  default     = 1024
}

variable "api_memory" {
  description = "Memory (MiB) per API task."
  type        = number
  default     = 2048
}

variable "api_min_tasks" {
  description = "API tasks at least (two or more, across availability zones)."
  type        = number
  default     = 2
}

variable "api_max_tasks" {
  description = "API tasks at most."
  type        = number
  default     = 10
}

variable "api_cpu_target_percent" {
  description = "Average CPU the API's autoscaling keeps."
  type        = number
  default     = 60
}

variable "api_requests_per_task_target" {
  description = "Load balancer requests per API task per minute that autoscaling keeps."
  type        = number
  default     = 30000
}

variable "consumer_count" {
  description = "Consumer tasks at least (autoscaling adds up to consumer_max_count while the consumer is behind)."
  type        = number
  default     = 2
}

variable "consumer_max_count" {
  description = "Consumer tasks at most. Each shard is read by one worker at a time, so more tasks than shards only adds standbys."
  type        = number
  default     = 4
}

variable "consumer_cpu" {
  description = "CPU units per consumer task."
  type        = number
  default     = 512
}

variable "consumer_memory" {
  description = "Memory (MiB) per consumer task."
  type        = number
  default     = 1024
}

variable "dashboard_count" {
  description = "Dashboard tasks (two: one per zone, the dashboard survives a zone's loss)."
  type        = number
  default     = 2
}

variable "dashboard_cpu" {
  description = "CPU units per dashboard task."
  type        = number
  default     = 512
}

variable "dashboard_memory" {
  description = "Memory (MiB) per dashboard task."
  type        = number
  default     = 1024
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for the services, flow logs and database logs."
  type        = number
  default     = 365
}

# --- Alarms ----------------------------------------------------------------------------------------------------

variable "alarm_topic_arn" {
  description = "SNS topic the alarms notify (your pager's); null: a topic named <name>-alarms is created, encrypted with the stack's key."
  type        = string
  default     = null
}

variable "consumer_lag_alarm_s" {
  description = "Alarm when the oldest unread record on the stream is older than this (seconds)."
  type        = number
  default     = 300
}

variable "alarm_5xx_per_minute" {
  description = "Alarm when the load balancer answers more 5xx than this a minute, three minutes in a row."
  type        = number
  default     = 10
}
