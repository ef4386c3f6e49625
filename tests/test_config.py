"""Settings: standard names, the reference design's aliases, and clear errors that never show secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiobotocore.session import get_session

from fraudflow.config import Settings, SettingsError, load_settings
from fraudflow.db.target import database_with_iam, resolve_database, resolve_database_url
from fraudflow.local.kinesis import KinesisServer
from fraudflow.local.postgres import EmbeddedPostgres


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DATABASE_URL",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "SECRETS_MANAGER_ID",
        "FRAUDFLOW_DB_IAM_AUTH",
        "KINESIS_STREAM",
        "FRAUDFLOW_STREAM",
        "stream_name",
        "AWS_REGION",
        "aws_region",
        "AWS_DEFAULT_REGION",
        "FRAUDFLOW_SHARDS",
        "FRAUDFLOW_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working tree


def test_defaults() -> None:
    settings = load_settings()
    assert settings.stream_name == "fraud-predictions-stream"
    assert settings.shards == 4
    assert settings.aws_region == "us-east-1"
    assert settings.static_database_url is None


def test_standard_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/x")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567")
    monkeypatch.setenv("FRAUDFLOW_STREAM", "s1")
    settings = load_settings()
    assert settings.static_database_url == "postgresql://u:p@db:5432/x"
    assert settings.aws_region == "eu-west-1"
    assert settings.kinesis_endpoint_url == "http://127.0.0.1:4567"
    assert settings.stream_name == "s1"


@pytest.mark.parametrize("name", ["KINESIS_STREAM", "stream_name"])
def test_reference_stream_aliases(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "legacy-stream")
    assert load_settings().stream_name == "legacy-stream"


def test_reference_region_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("aws_region", "eu-west-3")
    assert load_settings().aws_region == "eu-west-3"


def test_reference_postgres_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "rds.example")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_DB", "fraud")
    monkeypatch.setenv("POSTGRES_USER", "app")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss/word")
    assert load_settings().static_database_url == "postgresql://app:p%40ss%2Fword@rds.example:6543/fraud"


def test_database_url_wins_over_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgresql://chosen/db")
    assert load_settings().static_database_url == "postgresql://chosen/db"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KINESIS_STREAM=from-dotenv\nFRAUDFLOW_SHARDS=7\n")
    settings = load_settings()
    assert (settings.stream_name, settings.shards) == ("from-dotenv", 7)


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDFLOW_SHARDS", "many")
    with pytest.raises(SettingsError, match="FRAUDFLOW_SHARDS"):
        load_settings()


def test_errors_and_repr_never_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DATABASE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db/x")
    assert "hunter2" not in repr(load_settings())


async def test_missing_database_is_one_clear_error() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        await resolve_database_url(load_settings())


def test_cli_reports_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "db", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FRAUDFLOW_SHARDS": "0"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid setting FRAUDFLOW_SHARDS: Input should be greater than or equal to 1"
    ]
    assert "Traceback" not in result.stderr


@pytest.fixture
def create_secret(
    monkeypatch: pytest.MonkeyPatch, moto_server: KinesisServer
) -> Callable[[str, dict[str, object]], Awaitable[None]]:
    # moto's server also speaks Secrets Manager; botocore honours the per-service endpoint variable.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")

    async def create(name: str, secret: dict[str, object]) -> None:
        async with get_session().create_client("secretsmanager", region_name="us-east-1") as client:
            await client.create_secret(Name=name, SecretString=json.dumps(secret))

    return create


async def test_secrets_manager_database_url(
    monkeypatch: pytest.MonkeyPatch, create_secret: Callable[[str, dict[str, object]], Awaitable[None]]
) -> None:
    secret = {"username": "app", "password": "s3cr:t", "host": "db.internal", "port": 5433, "dbname": "fraud"}
    await create_secret("fraudflow/test-db", secret)
    monkeypatch.setenv("SECRETS_MANAGER_ID", "fraudflow/test-db")
    url = await resolve_database_url(Settings(_env_file=None))
    assert url == "postgresql://app:s3cr%3At@db.internal:5433/fraud"


async def test_rds_managed_secret_takes_host_from_settings(
    monkeypatch: pytest.MonkeyPatch, create_secret: Callable[[str, dict[str, object]], Awaitable[None]]
) -> None:
    # RDS-managed master secrets (what infra/terraform creates) hold only the user name and password.
    await create_secret("rds!db-fraudflow", {"username": "fraudflow", "password": "p@ss"})
    for name, value in {
        "SECRETS_MANAGER_ID": "rds!db-fraudflow",
        "POSTGRES_HOST": "fraudflow.abc.us-east-1.rds.amazonaws.com",
        "POSTGRES_DB": "fraudflow",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.static_database_url is None
    url = await resolve_database_url(settings)
    assert url == "postgresql://fraudflow:p%40ss@fraudflow.abc.us-east-1.rds.amazonaws.com:5432/fraudflow"


async def test_secret_without_any_host_is_a_named_error(
    monkeypatch: pytest.MonkeyPatch, create_secret: Callable[[str, dict[str, object]], Awaitable[None]]
) -> None:
    await create_secret("no-host", {"username": "u", "password": "p"})
    monkeypatch.setenv("SECRETS_MANAGER_ID", "no-host")
    with pytest.raises(SettingsError, match="SECRETS_MANAGER_ID"):
        await resolve_database_url(Settings(_env_file=None))


@pytest.fixture
async def password_role(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A role that must log in with a password (the embedded server trusts everyone else on loopback)."""
    role = f"rot_{uuid.uuid4().hex[:8]}"
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    admin = await asyncpg.connect(pg_server.url())
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'first'")
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")  # the first matching line wins
        await admin.execute("SELECT pg_reload_conf()")
        yield role
    finally:
        hba.write_text(original)
        await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_rotated_database_password_is_read_for_each_new_connection(
    monkeypatch: pytest.MonkeyPatch,
    create_secret: Callable[[str, dict[str, object]], Awaitable[None]],
    pg_server: EmbeddedPostgres,
    password_role: str,
) -> None:
    name = f"rds!{password_role}"
    await create_secret(name, {"username": password_role, "password": "first"})
    for variable, value in {
        "SECRETS_MANAGER_ID": name,
        "POSTGRES_HOST": pg_server.host,
        "POSTGRES_PORT": str(pg_server.port),
    }.items():
        monkeypatch.setenv(variable, value)
    target = await resolve_database(Settings(_env_file=None))
    await (await asyncpg.connect(**target.connect_kwargs())).close()

    # RDS rotates the password: the database and the secret change together.
    admin = await asyncpg.connect(pg_server.url())
    await admin.execute(f"ALTER ROLE {password_role} PASSWORD 'second'")
    await admin.close()
    async with get_session().create_client("secretsmanager", region_name="us-east-1") as client:
        await client.put_secret_value(
            SecretId=name, SecretString=json.dumps({"username": password_role, "password": "second"})
        )

    with pytest.raises(asyncpg.InvalidPasswordError):  # what a URL read once at start-up would do
        await asyncpg.connect(target.url)
    conn = await asyncpg.connect(**target.connect_kwargs())
    assert await conn.fetchval("SELECT current_user") == password_role
    await conn.close()


async def test_iam_database_authentication_signs_a_token_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer's and dashboard's way in on AWS: a user without a password, a token signed by the task role
    (signed locally: no network here)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("POSTGRES_HOST", "db.internal")
    monkeypatch.setenv("POSTGRES_USER", "fraudflow_consumer")
    monkeypatch.setenv("SECRETS_MANAGER_ID", "the-master-secret")  # present, and not used
    monkeypatch.setenv("FRAUDFLOW_DB_IAM_AUTH", "true")
    settings = Settings(_env_file=None)
    assert settings.static_database_url is None  # never a passwordless URL
    target = await resolve_database(settings)
    assert target.url == "postgresql://fraudflow_consumer@db.internal:5432/postgres"
    assert target.password is not None
    token = await target.password()
    assert token.startswith("db.internal:5432/?Action=connect&DBUser=fraudflow_consumer")
    assert "X-Amz-Signature=" in token


def test_iam_database_authentication_needs_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDFLOW_DB_IAM_AUTH", "true")
    with pytest.raises(SettingsError, match="POSTGRES_HOST"):
        database_with_iam(Settings(_env_file=None))


@pytest.mark.parametrize("url", ["http://cache:6379", "cache:6379", "postgresql://x"])
def test_a_feature_store_url_of_another_scheme_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("FRAUDFLOW_REDIS_URL", url)
    with pytest.raises(SettingsError, match="FRAUDFLOW_REDIS_URL.*redis://, rediss:// or unix://") as refused:
        load_settings()
    assert url not in str(refused.value)  # a URL may hold a password: never echoed
