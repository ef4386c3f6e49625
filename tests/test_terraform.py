"""infra/terraform, read with python-hcl2 (providers cannot be downloaded here, so `terraform validate` cannot run):
references resolve, settings and commands match the code, and the IAM policies stay least-privilege."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

import hcl2
import pytest

from tests.deployment import ROOT, known_environment_names, option, parse_command

TERRAFORM = ROOT / "infra" / "terraform"
FILES = sorted(TERRAFORM.glob("*.tf"))
PARSER_KEYS = {"__comments__", "__is_block__"}  # python-hcl2's annotations, not configuration


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels; drop them, recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {unquote(key): unquote(item) for key, item in value.items() if key not in PARSER_KEYS}
    return value


def load() -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for path in FILES:
        with path.open() as handle:
            for kind, blocks in unquote(hcl2.load(handle)).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


CONFIG = load()


def blocks(kind: str) -> dict[str, Any]:
    """name -> body for one-label blocks (variable, output), "type.name" -> body for resources and data."""
    result: dict[str, Any] = {}
    for block in CONFIG.get(kind, []):
        for label, body in block.items():
            if kind in {"resource", "data"}:
                for name, inner in body.items():
                    result[f"{label}.{name}"] = inner
            else:
                result[label] = body
    return result


VARIABLES = blocks("variable")
OUTPUTS = blocks("output")
RESOURCES = blocks("resource")
DATA = blocks("data")
LOCALS = {name: value for block in CONFIG.get("locals", []) for name, value in block.items()}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)


TEXT = "\n".join(strings(CONFIG))


def test_every_reference_resolves() -> None:
    assert FILES, "no Terraform files found"
    assert set(re.findall(r"\bvar\.(\w+)", TEXT)) <= set(VARIABLES)
    assert set(re.findall(r"\blocal\.(\w+)", TEXT)) <= set(LOCALS)
    assert {f"{t}.{n}" for t, n in re.findall(r"\bdata\.(\w+)\.(\w+)", TEXT)} <= set(DATA)
    referenced = {f"{t}.{n}" for t, n in re.findall(r"(?<![\w.])(aws_\w+)\.(\w+)", TEXT)}
    assert referenced <= set(RESOURCES), sorted(referenced - set(RESOURCES))


def test_everything_declared_is_used_and_documented() -> None:
    assert set(VARIABLES) == set(re.findall(r"\bvar\.(\w+)", TEXT)), "unused variables"
    assert set(LOCALS) == set(re.findall(r"\blocal\.(\w+)", TEXT)), "unused locals"
    data_used = {f"{t}.{n}" for t, n in re.findall(r"\bdata\.(\w+)\.(\w+)", TEXT)}
    assert set(DATA) == data_used, "unused data sources"
    for name, body in VARIABLES.items():
        assert body.get("description"), f"variable {name} needs a description"
        assert body.get("type"), f"variable {name} needs a type"
    for name, body in OUTPUTS.items():
        assert body.get("description"), f"output {name} needs a description"
    # Only what cannot have a safe default is required.
    assert {name for name, body in VARIABLES.items() if "default" not in body} == {
        "image_tag",
        "certificate_arn",
        "api_hostname",
        "dashboard_hostname",
    }


def test_settings_names_are_real() -> None:
    known = known_environment_names()
    environment_keys = set(LOCALS["stream_environment"]) | set(LOCALS["database_location"])
    expressions = [LOCALS[f"{role}_environment"] for role in ("api", "consumer", "dashboard", "migrate")]
    for text in expressions + [str(task["environment"]) for task in LOCALS["tasks"].values()]:
        environment_keys |= set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\s*=", text))
    environment_keys |= {secret["name"] for task in LOCALS["tasks"].values() for secret in task["secrets"]}
    assert {"FRAUDFLOW_API_KEYS", "FRAUDFLOW_DASHBOARD_USERS", "SECRETS_MANAGER_ID"} <= environment_keys
    assert environment_keys <= known, sorted(environment_keys - known)
    # Outputs in capitals are named for the setting they feed (the README's mapping table).
    assert {name for name in OUTPUTS if name.isupper()} <= known
    assert set(OUTPUTS["service_environment"]["value"].split("merge(")[1].replace(")}", "").split(", ")) == {
        "local.stream_environment",
        "local.migrate_environment",
    }


@pytest.mark.parametrize(("role", "port"), [("api", "--port"), ("consumer", "--metrics-port"), ("dashboard", "--port")])
def test_commands_and_health_checks_match_the_cli(role: str, port: str) -> None:
    command = LOCALS[f"{role}_command"]
    health = LOCALS[f"{role}_health"]
    parse_command(command)
    assert health[0] == "CMD"
    parse_command(health[1:])
    probe_port = re.search(r":(\d+)/", option(health, "--url") or "")
    assert (option(health, "--url") or "").endswith("/healthz"), "a probe of the process's health, not its metrics"
    assert probe_port is not None
    assert probe_port.group(1) == option(command, port)
    parse_command(LOCALS["migrate_command"])
    assert str(LOCALS["api_port"]) == option(LOCALS["api_command"], "--port")
    assert str(LOCALS["dashboard_port"]) == option(LOCALS["dashboard_command"], "--port")


def test_api_keeps_connections_longer_than_the_load_balancer() -> None:
    """uvicorn closing an idle connection the load balancer still reuses is a 502 for that request."""
    assert RESOURCES["aws_lb.this"]["idle_timeout"] == "${local.alb_idle_timeout_s}"
    keep_alive = option(LOCALS["api_command"], "--timeout-keep-alive")
    assert keep_alive is not None
    assert int(keep_alive) > int(LOCALS["alb_idle_timeout_s"])
    assert option(LOCALS["api_command"], "--http") == "api.protocol:BoundedHttpTools"


def test_internal_endpoints_are_not_public() -> None:
    """Every API route but scoring and liveness is answered 404 by the load balancer, before any other rule;
    the target group's readiness check goes to the task directly."""
    rule = RESOURCES["aws_lb_listener_rule.internal_paths"]
    assert rule["action"][0]["type"] == "fixed-response"
    assert rule["action"][0]["fixed_response"][0]["status_code"] == "404"
    assert rule["condition"][0]["path_pattern"][0]["values"] == "${each.value}"
    patterns = [pattern for group in LOCALS["internal_paths"] for pattern in group]
    assert all(len(group) <= 5 for group in LOCALS["internal_paths"])
    public = {"/predict", "/predict/batch", "/healthz"}
    from api.app import create_app
    from fraudflow.config import Settings

    app = create_app(Settings(_env_file=None))
    # Routes of included routers are listed by the OpenAPI document, the documents' own by app.routes.
    paths = set(app.openapi()["paths"]) | {path for route in app.routes if (path := getattr(route, "path", None))}
    assert {"/metrics", "/readyz", "/admin/reload-models", "/docs", "/openapi.json"} <= paths
    for path in paths - public:
        assert any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns), f"{path} is public"
    for path in public:
        assert not any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)
    assert int(RESOURCES["aws_lb_listener_rule.dashboard"]["priority"]) > len(LOCALS["internal_paths"])
    assert RESOURCES["aws_lb_target_group.api"]["health_check"][0]["path"] == "/readyz"


def test_the_dashboard_is_not_open_to_the_internet() -> None:
    """Allowed networks only (the VPC's range unless the operator names others), others get 403 from the load
    balancer; with dashboard_oidc the load balancer signs analysts in before forwarding."""
    assert "var.vpc_cidr" in LOCALS["dashboard_cidrs"]
    assert VARIABLES["dashboard_allowed_cidrs"]["default"] == []
    rule = RESOURCES["aws_lb_listener_rule.dashboard"]
    conditions = {key for condition in rule["condition"] for key in condition}
    assert conditions == {"host_header", "source_ip"}
    (source,) = [c["source_ip"][0] for c in rule["condition"] if "source_ip" in c]
    assert source["values"] == "${local.dashboard_cidrs}"
    (oidc,) = rule["dynamic"]
    assert oidc["action"]["for_each"] == "${var.dashboard_oidc == null ? [] : [var.dashboard_oidc]}"
    assert oidc["action"]["content"][0]["type"] == "authenticate-oidc"
    assert rule["action"][0]["type"] == "forward"
    elsewhere = RESOURCES["aws_lb_listener_rule.dashboard_elsewhere"]
    assert elsewhere["condition"] == [{"host_header": [{"values": ["${var.dashboard_hostname}"]}]}]
    assert elsewhere["action"][0]["fixed_response"][0]["status_code"] == "403"
    assert int(elsewhere["priority"]) > int(rule["priority"])


def test_a_web_acl_limits_each_client() -> None:
    association = RESOURCES["aws_wafv2_web_acl_association.load_balancer"]
    assert association["resource_arn"] == "${aws_lb.this.arn}"
    assert association["web_acl_arn"] == "${aws_wafv2_web_acl.this.arn}"
    rules = {rule["name"]: rule for rule in RESOURCES["aws_wafv2_web_acl.this"]["rule"]}
    rate = rules["rate-per-client"]
    assert "block" in rate["action"][0]
    assert rate["statement"][0]["rate_based_statement"][0]["limit"] == "${var.waf_rate_limit}"
    assert rate["statement"][0]["rate_based_statement"][0]["aggregate_key_type"] == "IP"
    assert "none" in rules["known-bad-inputs"]["override_action"][0]  # the managed rules' own blocks apply
    logging = RESOURCES["aws_wafv2_web_acl_logging_configuration.this"]
    assert logging["log_destination_configs"] == ["${aws_cloudwatch_log_group.waf.arn}"]


@pytest.mark.parametrize("document", ["ecs_tasks_assume", "flow_logs_assume", "rds_monitoring_assume"])
def test_service_trust_is_limited_to_this_account(document: str) -> None:
    (statement,) = statements(document)
    (condition,) = statement["condition"]
    assert (condition["variable"], condition["values"]) == ("aws:SourceAccount", ["${local.account_id}"])


def test_execution_roles_decrypt_only_through_the_services_they_use() -> None:
    (decrypt,) = [s for s in statements("execution") if s["actions"] == ["kms:Decrypt"]]
    (condition,) = decrypt["condition"]
    assert condition["variable"] == "kms:ViaService"
    assert "ecr." in condition["values"]
    assert "length(local.injected_secrets[each.key]) > 0" in condition["values"]


def test_clients_see_the_certificates_name_and_cannot_forge_their_address() -> None:
    assert OUTPUTS["CHALICE_API_URL"]["value"] == "https://${var.api_hostname}"
    assert option(LOCALS["api_command"], "--forwarded-allow-ips") == "${local.vpc_cidr_block}"


def test_an_operator_is_paged_for_what_matters() -> None:
    alarms = {name: body for name, body in RESOURCES.items() if name.startswith("aws_cloudwatch_metric_alarm.")}
    metrics = {body["metric_name"] for body in alarms.values()}
    assert {
        "GetRecords.IteratorAgeMilliseconds",
        "WriteProvisionedThroughputExceeded",
        "${each.key}",  # HTTPCode_ELB_5XX_Count and HTTPCode_Target_5XX_Count
        "UnHealthyHostCount",
        "RunningTaskCount",
        "FreeStorageSpace",
        "CPUUtilization",
    } <= metrics
    assert set(RESOURCES["aws_cloudwatch_metric_alarm.load_balancer_5xx"]["for_each"].split('"')[1::2]) == {
        "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count",
    }
    for name, body in alarms.items():
        assert body.get("alarm_description"), name
        if name != "aws_cloudwatch_metric_alarm.consumer_caught_up":  # scale-in only, nobody is paged
            assert "local.alarm_actions" in str(body["alarm_actions"]), name
    assert RESOURCES["aws_sns_topic.alarms"]["kms_master_key_id"] == "${aws_kms_key.this.arn}"


def test_the_release_script_migrates_before_it_rolls_the_services() -> None:
    script = (ROOT / "infra" / "scripts" / "release").read_text()
    targeted = script.index("terraform apply -target='aws_ecs_task_definition.this[\"migrate\"]'")
    waited = script.index("aws ecs wait tasks-stopped")
    checked = script.index('if [[ "$code" != "0" ]]')
    rolled = script.rindex('terraform apply -var "image_tag=$tag"')
    assert targeted < waited < checked < rolled
    for name in re.findall(r"terraform output -raw (\w+)", script):
        assert name in OUTPUTS, name
    assert "migrate" in OUTPUTS["migrate_command"]["value"]


def test_containers_drop_every_capability() -> None:
    definitions = RESOURCES["aws_ecs_task_definition.this"]["container_definitions"]
    assert 'capabilities = {drop = ["ALL"]}' in definitions


def test_the_consumer_scales_with_its_lag() -> None:
    target = RESOURCES["aws_appautoscaling_target.consumer"]
    assert (target["min_capacity"], target["max_capacity"]) == ("${var.consumer_count}", "${var.consumer_max_count}")
    behind = RESOURCES["aws_cloudwatch_metric_alarm.consumer_behind"]
    assert "aws_appautoscaling_policy.consumer_out.arn" in behind["alarm_actions"]
    caught_up = RESOURCES["aws_cloudwatch_metric_alarm.consumer_caught_up"]
    assert caught_up["alarm_actions"] == ["${aws_appautoscaling_policy.consumer_in.arn}"]
    assert caught_up["metric_name"] == behind["metric_name"]
    assert RESOURCES["aws_ecs_service.consumer"]["lifecycle"][0]["ignore_changes"] == ["desired_count"]


def test_defaults_survive_a_weekend_a_zone_and_an_upgrade() -> None:
    assert VARIABLES["kinesis_retention_hours"]["default"] >= 72  # a weekend's consumer stall loses nothing
    assert VARIABLES["dashboard_count"]["default"] >= 2  # one per zone
    assert "." not in VARIABLES["db_engine_version"]["default"]  # the major only: AWS upgrades minors
    assert RESOURCES["aws_db_instance.this"]["auto_minor_version_upgrade"] is True


def test_each_zone_reaches_aws_through_its_own_nat() -> None:
    """A zone lost with the only NAT gateway would cut the other zone's tasks off Kinesis, ECR and Logs."""
    subnets = RESOURCES["aws_subnet.private"]["count"]
    for resource in ("aws_eip.nat", "aws_nat_gateway.this", "aws_route_table.private"):
        assert RESOURCES[resource]["count"] == subnets, resource
    nat = RESOURCES["aws_nat_gateway.this"]
    assert nat["subnet_id"] == "${aws_subnet.public[count.index].id}"
    assert nat["allocation_id"] == "${aws_eip.nat[count.index].id}"
    assert (
        RESOURCES["aws_route_table.private"]["route"][0]["nat_gateway_id"] == "${aws_nat_gateway.this[count.index].id}"
    )
    association = RESOURCES["aws_route_table_association.private"]
    assert association["route_table_id"] == "${aws_route_table.private[count.index].id}"
    assert association["subnet_id"] == "${aws_subnet.private[count.index].id}"


def test_every_database_client_verifies_the_server() -> None:
    assert LOCALS["database_location"]["FRAUDFLOW_DB_SSLMODE"] == "verify-full"
    for role in ("consumer", "dashboard", "migrate"):
        assert "local.database_location" in LOCALS[f"{role}_environment"], role
    assert "local.migrate_environment" in str(LOCALS["tasks"]["migrate"]["environment"])


def test_only_migrations_use_the_master_user() -> None:
    """The consumer and the dashboard log in as their own users (writer and reader roles, migration 0007)
    with IAM tokens; the master secret reaches the migration task alone."""
    master = "master_user_secret"
    tasks = LOCALS["tasks"]
    for role in ("api", "consumer", "dashboard"):
        assert master not in str(tasks[role]), role
    assert "local.migrate_environment" in str(tasks["migrate"]["environment"])
    assert master in str(LOCALS["migrate_environment"])
    for role in ("consumer", "dashboard"):
        policy = str(statements(role))
        assert master not in policy, role
        assert "secretsmanager" not in policy, role
        (connect,) = [s for s in statements(role) if s["actions"] == ["rds-db:connect"]]
        assert connect["resources"][0].endswith(f"/${{local.database_users.{role}}}")
        environment = LOCALS[f"{role}_environment"]
        assert "SECRETS_MANAGER_ID" not in environment
        assert f"local.database_users.{role}" in environment
        assert "FRAUDFLOW_DB_IAM_AUTH" in environment
    assert master in str(statements("database_client"))
    assert LOCALS["task_policies"]["migrate"] == "${data.aws_iam_policy_document.database_client.json}"
    users = LOCALS["database_users"]
    sql = (ROOT / "fraudflow" / "db" / "migrations" / "0007_service_roles.sql").read_text()
    assert f"CREATE ROLE {users['consumer']} LOGIN IN ROLE fraudflow_writer, rds_iam" in sql
    assert f"CREATE ROLE {users['dashboard']} LOGIN IN ROLE fraudflow_reader, rds_iam" in sql


def statements(document: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = DATA[f"aws_iam_policy_document.{document}"]["statement"]
    return found


def actions(document: str) -> set[str]:
    return {action for statement in statements(document) for action in statement["actions"]}


def test_api_may_only_publish_to_its_stream_and_log_in_as_its_database_user() -> None:
    assert actions("api") == {
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:DescribeStreamSummary",
        "kinesis:DescribeStream",
        "kms:GenerateDataKey",
        "rds-db:connect",  # its rules and lists (docs/decisions.md)
    }
    for statement in statements("api"):
        assert statement["resources"][0] in ("${aws_kinesis_stream.events.arn}", "${aws_kms_key.this.arn}") or (
            statement["resources"][0].endswith("/${local.database_users.api}")
        )


def test_consumer_may_only_read() -> None:
    assert {action for action in actions("consumer") if action.startswith("kinesis:")} == {
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "kinesis:DescribeStreamSummary",
        "kinesis:DescribeStream",
    }
    assert not [action for action in actions("consumer") if "Put" in action or action.endswith("*")]


@pytest.mark.parametrize("document", ["api", "consumer", "database_client"])
def test_task_policies_name_their_resources_and_scope_kms(document: str) -> None:
    for statement in statements(document):
        assert "*" not in statement["resources"]
        if any(action.startswith("kms:") for action in statement["actions"]):
            (condition,) = statement["condition"]
            assert condition["variable"] == "kms:ViaService"


def test_only_the_ecr_login_is_unscoped() -> None:
    (execution,) = [DATA["aws_iam_policy_document.execution"]]
    unscoped = [statement for statement in execution["statement"] if "*" in statement["resources"]]
    assert [statement["actions"] for statement in unscoped] == [["ecr:GetAuthorizationToken"]]


def test_database_is_private_encrypted_and_protected() -> None:
    database = RESOURCES["aws_db_instance.this"]
    assert database["publicly_accessible"] is False
    assert database["storage_encrypted"] is True
    assert database["manage_master_user_password"] is True
    assert database["deletion_protection"] == "${var.db_deletion_protection}"
    assert VARIABLES["db_deletion_protection"]["default"] is True
    assert VARIABLES["db_skip_final_snapshot"]["default"] is False
    assert VARIABLES["db_backup_retention_days"]["default"] >= 7
    stream = RESOURCES["aws_kinesis_stream.events"]
    assert stream["encryption_type"] == "KMS"


def test_every_checkov_skip_gives_a_reason() -> None:
    skips = [match for path in FILES for match in re.findall(r"#checkov:skip=(\w+)(?::(.*))?", path.read_text())]
    assert skips
    for check, reason in skips:
        assert len(reason.strip()) > 30, f"{check} is skipped without a reason"


def test_the_feature_store_is_private_encrypted_and_reached_by_the_api_alone() -> None:
    store = RESOURCES["aws_elasticache_replication_group.feature_store"]
    assert store["at_rest_encryption_enabled"] is True
    assert store["transit_encryption_enabled"] is True
    assert store["auth_token"] == "${random_password.feature_store.result}"
    assert store["automatic_failover_enabled"] is True
    assert store["security_group_ids"] == ["${aws_security_group.feature_store.id}"]
    assert RESOURCES["aws_elasticache_subnet_group.feature_store"]["subnet_ids"] == "${local.private_subnet_ids}"
    ingress = [
        rule
        for rule in RESOURCES.values()
        if rule.get("security_group_id") == "${aws_security_group.feature_store.id}" and "from_port" in rule
    ]
    assert [rule["referenced_security_group_id"] for rule in ingress] == ["${aws_security_group.api.id}"]
    # TLS, and the token from Secrets Manager, not in the task definition.
    assert LOCALS["api_environment"].count("rediss://") == 1
    api_secrets = LOCALS["tasks"]["api"]["secrets"]
    assert {
        "name": "FRAUDFLOW_REDIS_AUTH_TOKEN",
        "valueFrom": "${aws_secretsmanager_secret.feature_store_token.arn}",
    } in (api_secrets)
