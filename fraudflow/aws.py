"""aiobotocore clients built from settings: one place that knows endpoints, credentials and timeouts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from fraudflow.config import Settings, SettingsError, postgres_url

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Emulators accept any credentials; botocore still needs some to sign with.
_EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def is_local_endpoint(url: str | None) -> bool:
    return url is not None and urlparse(url).hostname in _LOOPBACK


def client_config(*, read_timeout: float = 10.0, max_attempts: int = 1, pool: int = 32) -> AioConfig:
    # Retries default to one attempt: our callers own backoff, so they can keep per-key order and count faults.
    return AioConfig(
        connect_timeout=2.0,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=pool,
    )


@asynccontextmanager
async def kinesis_client(settings: Settings, config: AioConfig | None = None) -> AsyncIterator[KinesisClient]:
    session = get_session()
    kwargs: dict[str, Any] = {"region_name": settings.aws_region, "config": config or client_config()}
    if settings.kinesis_endpoint_url:
        kwargs["endpoint_url"] = settings.kinesis_endpoint_url
        if is_local_endpoint(settings.kinesis_endpoint_url) and await session.get_credentials() is None:
            kwargs.update(_EMULATOR_CREDENTIALS)
    async with session.create_client("kinesis", **kwargs) as client:
        yield client


async def database_url_from_secret(settings: Settings) -> str:
    """Build the database URL from an AWS Secrets Manager secret.

    RDS-managed master secrets hold only `username` and `password`; the host, port and database then come from
    POSTGRES_HOST, POSTGRES_PORT and POSTGRES_DB. Secrets made by RDS rotation templates also carry them.
    """
    assert settings.secrets_manager_id
    session = get_session()
    async with session.create_client("secretsmanager", region_name=settings.aws_region) as client:
        response = await client.get_secret_value(SecretId=settings.secrets_manager_id)
    try:
        secret = json.loads(response["SecretString"])
        host = secret.get("host") or settings.postgres_host
        if not host:
            raise KeyError("host")
        return postgres_url(
            host,
            int(secret.get("port", settings.postgres_port)),
            secret.get("dbname", settings.postgres_db),
            secret["username"],
            secret["password"],
        )
    except (KeyError, ValueError, TypeError) as error:
        raise SettingsError(
            f"invalid setting SECRETS_MANAGER_ID: the secret's JSON lacks a usable field ({type(error).__name__})"
        ) from None


async def resolve_database_url(settings: Settings) -> str:
    url = settings.static_database_url
    if url is not None:
        return url
    if settings.secrets_manager_id:
        return await database_url_from_secret(settings)
    raise SettingsError(
        "missing setting DATABASE_URL (or POSTGRES_HOST, or SECRETS_MANAGER_ID); "
        "`fraudflow services` prints one for the embedded server"
    )
