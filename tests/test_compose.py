"""docker-compose.yml, checked against the real CLI, settings and routes (no Docker engine here to run it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from api.app import check_security as api_security
from dash_app.app import check_security as dashboard_security
from dash_app.auth import HEALTH_PATH
from tests.deployment import ROOT, known_environment_names, option, parse_command, settings_from

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if service.get("image") == "fraudflow:local"}


def test_stack_has_every_part() -> None:
    assert {
        "postgres",
        "kinesis",
        "valkey",
        "migrate",
        "create-stream",
        "api",
        "consumer",
        "dashboard",
        "simulator",
    } <= set(SERVICES)
    # Two workers of one application, to show lease sharing.
    assert SERVICES["consumer"]["deploy"]["replicas"] == 2
    assert option(SERVICES["consumer"]["command"], "--worker-id") is None, "replicas need distinct worker ids"
    assert all("build" in service for service in OURS.values())


def test_third_party_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if name not in OURS:
            image = service["image"]
            assert ":" in image, f"{name}: pin {image}"
            assert not image.endswith(":latest"), f"{name}: pin {image}"


@pytest.mark.parametrize("name", sorted(OURS))
def test_commands_parse_with_the_real_cli(name: str) -> None:
    parse_command(OURS[name]["command"])


@pytest.mark.parametrize("name", sorted(OURS))
def test_environment_names_and_values_are_real_settings(name: str) -> None:
    environment = {key: str(value) for key, value in OURS[name]["environment"].items()}
    unknown = set(environment) - known_environment_names()
    assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    settings = settings_from(environment)
    # The image runs with FRAUDFLOW_ENV=production: the API and dashboard refuse to start without credentials.
    assert settings.production
    api_security(settings)
    dashboard_security(settings)
    assert settings.static_database_url is not None
    assert urlparse(settings.static_database_url).hostname == "postgres"
    assert urlparse(settings.kinesis_endpoint_url).hostname == "kinesis"


def test_database_credentials_match_the_postgres_service() -> None:
    database = SERVICES["postgres"]["environment"]
    for service in OURS.values():
        environment = service["environment"]
        for name in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
            assert environment[name] == database[name]


def _ordered(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_start_order_and_health_checks() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in _ordered(service).items():
            target = SERVICES[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency}'s health, which has no check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is a one-shot and must not restart"
    ready = {"migrate": "service_completed_successfully", "create-stream": "service_completed_successfully"}
    assert _ordered(SERVICES["consumer"]) == ready
    assert _ordered(SERVICES["api"]) == {**ready, "valkey": "service_healthy"}  # the online feature store
    assert _ordered(SERVICES["migrate"]) == {"postgres": "service_healthy"}
    assert _ordered(SERVICES["simulator"]) == {"api": "service_healthy"}


@pytest.mark.parametrize(
    ("name", "port_option", "path"),
    [
        ("api", "--port", "/readyz"),
        ("consumer", "--metrics-port", "/healthz"),
        ("dashboard", "--port", HEALTH_PATH),
    ],
)
def test_health_checks_probe_the_port_the_command_serves(name: str, port_option: str, path: str) -> None:
    service = OURS[name]
    probe = service["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "fraudflow", "healthcheck"]
    parse_command(probe[1:])
    url = urlparse(option(probe, "--url") or "")
    assert (str(url.port), url.path) == (option(service["command"], port_option), path)
    for published in service.get("ports", []):
        assert published.split(":")[-1] == str(url.port)
        assert published.startswith("127.0.0.1:"), "known local credentials: publish on this machine only"


def test_api_routes_named_by_probes_exist() -> None:
    from api.app import create_app

    paths = create_app(settings_from(OURS["api"]["environment"])).openapi()["paths"]
    assert {"/readyz", "/healthz", "/predict"} <= set(paths)


def test_simulator_reaches_the_api_with_a_valid_key() -> None:
    environment = SERVICES["simulator"]["environment"]
    target = urlparse(environment["CHALICE_API_URL"])
    assert target.hostname == "api"
    assert str(target.port) == option(SERVICES["api"]["command"], "--port")
    assert environment["FRAUDFLOW_SIMULATE_API_KEY"] in settings_from(environment).api_key_list
    parse_command(SERVICES["simulator"]["command"])
