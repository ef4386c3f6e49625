"""Migrations apply once, twice cleanly, concurrently, and refuse edited history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fraudflow.db import migrate as migrations
from fraudflow.local.postgres import EmbeddedPostgres


@pytest.fixture
async def empty_database(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.url())
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_apply_twice(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        first = await migrations.migrate(conn)
        second = await migrations.migrate(conn)
        assert [m.version for m in first] == [m.version for m in migrations.available_migrations()]
        assert second == []
        states = await migrations.status(conn)
        assert all(state.applied_at is not None for state in states)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"fraud_predictions", "rejected_records", "kinesis_leases", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_migration_once(empty_database: str) -> None:
    conns = [await asyncpg.connect(empty_database) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrations.migrate(conn) for conn in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in migrations.available_migrations()]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(migrations.available_migrations())
    finally:
        for conn in conns:
            await conn.close()


async def test_status_before_migrating_lists_pending(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        assert all(state.applied_at is None for state in await migrations.status(conn))
    finally:
        await conn.close()


async def test_edited_migration_is_refused(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        await migrations.migrate(db)


async def test_event_id_is_unique(db: asyncpg.Connection) -> None:
    event_id = uuid.uuid4()
    row = ("2026-01-01T00:00:00Z", "u1", "checkout", 0, 0.1, 0.2, event_id, "approve", "v1")
    insert = """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                anomaly_score, event_id, decision, model_version)
                VALUES ($1::text::timestamptz, $2, $3, $4, $5, $6, $7, $8, $9)"""
    await db.execute(insert, *row)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, *row)


async def test_places_are_split_by_city_where_the_rows_remain(empty_database: str) -> None:
    """Migration 0010 keeps every count: rows still stored move to their city, rows a retention job deleted
    stay counted under no city."""
    conn = await asyncpg.connect(empty_database)
    try:
        before = [m for m in migrations.available_migrations() if m.version < 10]
        for migration in before:
            await conn.execute(migration.sql)
        for city in ("Paris", "Paris", "Versailles", "Gone"):
            await conn.execute(
                """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                       anomaly_score, city, latitude, longitude, event_id, decision, model_version, received_at)
                   VALUES ('2026-01-01T10:05Z', 'u', 'web', 0, 0.5, 0.1, $1, 48.86, 2.35, $2, 'approve', 'v',
                           '2026-01-01T10:05Z')""",
                city,
                uuid.uuid4(),
            )
        await conn.execute("SELECT fraudflow_add_to_rollups('fraud_predictions')")
        await conn.execute("DELETE FROM fraud_predictions WHERE city = 'Gone'")
        async with conn.transaction():
            await conn.execute(migrations.available_migrations()[len(before)].sql)
        places = await conn.fetch("SELECT city, transactions, sum_proba FROM fraud_places_15m ORDER BY city")
        assert [(r["city"], r["transactions"]) for r in places] == [("", 1), ("Paris", 2), ("Versailles", 1)]
        assert places[0]["sum_proba"] == pytest.approx(0.5)
        cities = await conn.fetch("SELECT value, transactions FROM fraud_dimensions_15m WHERE dimension = 'city'")
        assert sorted((r["value"], r["transactions"]) for r in cities) == [("Paris", 2), ("Versailles", 1)]
    finally:
        await conn.close()
