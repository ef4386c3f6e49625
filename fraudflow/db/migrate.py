"""Versioned SQL migrations: idempotent, checksummed, and safe to run from several processes at once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import asyncpg

from fraudflow.errors import ExpectedError

# Every process that migrates takes this advisory lock first, so concurrent runs apply each file once.
_LOCK_KEY = 0x66726175_64666C6F  # "fraudflo"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(ExpectedError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: datetime | None


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("fraudflow.db.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {row["version"]: row for row in rows}


def _check_unchanged(applied: dict[int, asyncpg.Record], migrations: list[Migration]) -> None:
    for migration in migrations:
        row = applied.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations in order; returns the ones this call applied."""
    migrations = available_migrations()
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
        _check_unchanged(applied, migrations)
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def status(conn: asyncpg.Connection) -> list[MigrationState]:
    migrations = available_migrations()
    applied = await _applied(conn)
    _check_unchanged(applied, migrations)
    return [
        MigrationState(m.version, m.name, applied[m.version]["applied_at"] if m.version in applied else None)
        for m in migrations
    ]
