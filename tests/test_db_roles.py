"""Least privilege inside the database: the consumer's role stores events and nothing else, the dashboard's
only reads. Real users in the real server, connected as a service would."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from consumers.config import ConsumerConfig
from dash_app import queries
from dash_app.queries import Filters
from fraudflow.config import Settings
from tests.consumer_helpers import put_events, stored, wait_until, worker


def _as(url: str, user: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(netloc=f"{user}:secret@{parts.hostname}:{parts.port}"))


@pytest.fixture
async def service_users(db: asyncpg.Connection, database_url: str) -> AsyncIterator[dict[str, str]]:
    """A login user in each service role (roles are server-wide: the names are unique to this test)."""
    suffix = uuid.uuid4().hex[:8]
    users = {"writer": f"consumer_{suffix}", "reader": f"dashboard_{suffix}"}
    for role, user in users.items():
        await db.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'secret' IN ROLE fraudflow_{role}")
    yield {role: _as(database_url, user) for role, user in users.items()}
    for user in users.values():
        await db.execute(f"DROP OWNED BY {user}")
        await db.execute(f"DROP ROLE {user}")


async def test_the_consumer_role_stores_events_but_cannot_change_the_schema(
    settings: Settings, db: asyncpg.Connection, service_users: dict[str, str]
) -> None:
    as_consumer = Settings(
        DATABASE_URL=service_users["writer"],
        AWS_ENDPOINT_URL_KINESIS=settings.kinesis_endpoint_url,
        AWS_REGION="us-east-1",
        FRAUDFLOW_STREAM=settings.stream_name,
        _env_file=None,
    )
    await put_events(as_consumer, 50)
    async with worker(as_consumer, "w1", ConsumerConfig(failover_s=1.5, flush_interval_s=0.05)):
        await wait_until(lambda: _stored(db, 50), what="50 rows written as the consumer's user")
    assert await db.fetchval("SELECT sum(transactions) FROM fraud_stats_15m") == 50
    conn = await asyncpg.connect(service_users["writer"])
    try:
        for statement in (
            "ALTER TABLE fraud_predictions ADD COLUMN x integer",
            "CREATE TABLE mine (x integer)",
            "DROP TABLE rejected_records",
            "DELETE FROM fraud_predictions",
            "UPDATE fraud_predictions SET decision = 'approve'",
            "TRUNCATE kinesis_leases",
        ):
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError)):
                await conn.execute(statement)
    finally:
        await conn.close()


async def _stored(db: asyncpg.Connection, n: int) -> bool:
    return (await stored(db))[0] >= n


async def test_the_dashboard_role_reads_and_cannot_write(
    settings: Settings, db: asyncpg.Connection, service_users: dict[str, str]
) -> None:
    await put_events(settings, 5)
    async with worker(settings, "w1"):
        await wait_until(lambda: _stored(db, 5), what="5 rows")
    conn = await asyncpg.connect(service_users["reader"])
    try:
        now = datetime.now(UTC)
        k = await queries.kpis(conn, Filters(start=now - timedelta(hours=1), end=now + timedelta(minutes=1)))
        assert k["transactions"] == 5
        assert len(await queries.leases(conn)) == 2
        for statement in (
            "INSERT INTO rejected_records (stage, payload, reason) VALUES ('x', 'x', 'x')",
            "UPDATE kinesis_leases SET owner = NULL",
            "DELETE FROM fraud_predictions",
            "CREATE TABLE mine (x integer)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()
