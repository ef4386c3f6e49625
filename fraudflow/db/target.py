"""Where PostgreSQL is: a URL from the settings, or an AWS Secrets Manager secret whose password rotates."""

from __future__ import annotations

import dataclasses
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from fraudflow.config import DbSslMode, Settings, SettingsError, postgres_url


@dataclass(frozen=True)
class DatabaseTarget:
    """Where PostgreSQL is, and for a secret that rotates, how to read the current password.

    RDS rotates a managed master password (every 7 days by default): a URL read at start-up would fail on the
    first reconnect after that, so every new connection asks Secrets Manager for the password again.
    """

    url: str
    password: Callable[[], Awaitable[str]] | None = None
    ssl: ssl.SSLContext | str | None = None  # None: what the URL says (asyncpg's default: prefer)

    def connect_kwargs(self) -> dict[str, Any]:
        """Arguments for asyncpg.connect/create_pool (an explicit password takes precedence over the URL's)."""
        kwargs: dict[str, Any] = {"dsn": self.url}
        if self.password is not None:
            kwargs["password"] = self.password
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        return kwargs


RDS_CA_BUNDLE = Path(__file__).with_name("rds-ca-bundle.pem")


def tls_for(settings: Settings) -> ssl.SSLContext | str | None:
    """FRAUDFLOW_DB_SSLMODE as asyncpg takes it: verify-ca and verify-full check the server's certificate
    against FRAUDFLOW_DB_SSLROOTCERT (default: Amazon RDS's authorities), verify-full its host name too."""
    mode = settings.db_sslmode
    if mode not in (DbSslMode.VERIFY_CA, DbSslMode.VERIFY_FULL):
        return None if mode is None else mode.value
    cafile = settings.db_sslrootcert or RDS_CA_BUNDLE
    try:
        context = ssl.create_default_context(cafile=str(cafile))
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(f"invalid setting FRAUDFLOW_DB_SSLROOTCERT: cannot read {cafile} ({error})") from None
    context.check_hostname = mode is DbSslMode.VERIFY_FULL
    return context


async def _read_secret(settings: Settings) -> dict[str, Any]:
    assert settings.secrets_manager_id
    session = get_session()
    async with session.create_client("secretsmanager", region_name=settings.aws_region) as client:
        response = await client.get_secret_value(SecretId=settings.secrets_manager_id)
    try:
        secret = json.loads(response["SecretString"])
        if not isinstance(secret, dict):
            raise TypeError("not an object")
    except (KeyError, ValueError, TypeError) as error:
        raise _bad_secret(error) from None
    return secret


def _bad_secret(error: Exception) -> SettingsError:
    return SettingsError(
        f"invalid setting SECRETS_MANAGER_ID: the secret's JSON lacks a usable field ({type(error).__name__})"
    )


async def database_from_secret(settings: Settings) -> DatabaseTarget:
    """The database named by an AWS Secrets Manager secret.

    RDS-managed master secrets hold only `username` and `password`; the host, port and database then come from
    POSTGRES_HOST, POSTGRES_PORT and POSTGRES_DB. Secrets made by RDS rotation templates also carry them.
    """
    secret = await _read_secret(settings)
    try:
        host = secret.get("host") or settings.postgres_host
        if not host:
            raise KeyError("host")
        url = postgres_url(
            host,
            int(secret.get("port", settings.postgres_port)),
            secret.get("dbname", settings.postgres_db),
            secret["username"],
            secret["password"],
        )
    except (KeyError, ValueError, TypeError) as error:
        raise _bad_secret(error) from None

    async def current_password() -> str:
        return str((await _read_secret(settings))["password"])

    return DatabaseTarget(url, current_password)


def database_with_iam(settings: Settings) -> DatabaseTarget:
    """POSTGRES_USER on POSTGRES_HOST, authenticated by a fresh IAM token for each new connection (a token is
    valid for 15 minutes; signing one is local, no network call)."""
    if not settings.postgres_host:
        raise SettingsError("missing setting POSTGRES_HOST: FRAUDFLOW_DB_IAM_AUTH needs the database's host")
    host, port, user = settings.postgres_host, settings.postgres_port, settings.postgres_user
    session = get_session()

    async def token() -> str:
        async with session.create_client("rds", region_name=settings.aws_region) as client:
            return str(await client.generate_db_auth_token(host, port, user, settings.aws_region))

    return DatabaseTarget(postgres_url(host, port, settings.postgres_db, user, None), token)


async def resolve_database(settings: Settings) -> DatabaseTarget:
    target = await _database(settings)
    return dataclasses.replace(target, ssl=tls_for(settings))


async def _database(settings: Settings) -> DatabaseTarget:
    if settings.db_iam_auth:
        return database_with_iam(settings)
    url = settings.static_database_url
    if url is not None:
        return DatabaseTarget(url)
    if settings.secrets_manager_id:
        return await database_from_secret(settings)
    raise SettingsError(
        "missing setting DATABASE_URL (or POSTGRES_HOST, or SECRETS_MANAGER_ID); "
        "`fraudflow services` prints one for the embedded server"
    )


async def resolve_database_url(settings: Settings) -> str:
    """The URL alone (for one-off connections, where a rotation during the command does not matter)."""
    return (await resolve_database(settings)).url
