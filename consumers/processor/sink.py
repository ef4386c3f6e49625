"""The record processor: exactly once into PostgreSQL.

A flush is one transaction: COPY into a session-local staging table, INSERT into `fraud_predictions`, the
rows actually inserted added to the dashboard's quarter-hour aggregates, dead letters into
`rejected_records`, and the shard's checkpoint, fenced by the lease's owner and epoch. A worker that lost
its lease cannot commit, and a commit covers exactly the records up to its checkpoint, so no row is written
twice or skipped, whatever crashes.

Events are idempotent by `event_id` (a producer retry publishes the same event twice). Duplicates are rare,
so the INSERT first runs plain, in a savepoint; only when a unique violation rolls it back do the rows go
through `ON CONFLICT (event_id) DO NOTHING`, which costs more on the server and must copy the rows it
inserted aside for the aggregates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from consumers.leases.table import Connection, Lease, LeaseTable
from consumers.processor.rows import AS_TEXT, COLUMNS, Rejection, to_row
from consumers.retrieval.fetcher import Record

STAGING = "fraudflow_staging"
INSERTED = "fraudflow_inserted"  # this flush's new rows (not the duplicates), for the aggregates
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGED_COLUMNS = ", ".join(f'"{c}"::text AS "{c}"' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)
_FROM_STAGING = ", ".join(f'"{c}"::{AS_TEXT[c]}' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)
_INSERT = f"INSERT INTO fraud_predictions ({_COLUMN_LIST}) SELECT {_FROM_STAGING} FROM {STAGING}"
_INSERT_NEW = (
    f"WITH new AS ({_INSERT} ON CONFLICT (event_id) DO NOTHING RETURNING *) INSERT INTO {INSERTED} SELECT * FROM new"
)
_ADD_TO_ROLLUPS = "SELECT fraudflow_add_to_rollups($1::regclass)"


async def create_staging(conn: asyncpg.Connection) -> None:
    """Pool `init` hook: the staging tables of one connection, emptied at every commit. The staging table
    has `processed_at` (the transaction's time, as in `fraud_predictions`) for the aggregates."""
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS "
        f"SELECT {_STAGED_COLUMNS}, processed_at FROM fraud_predictions WITH NO DATA;"
        f"ALTER TABLE {STAGING} ALTER COLUMN processed_at SET DEFAULT now();"
        f"CREATE TEMP TABLE IF NOT EXISTS {INSERTED} ON COMMIT DELETE ROWS AS "
        "SELECT * FROM fraud_predictions WITH NO DATA"
    )


@dataclass
class ShardBuffer:
    """Rows and dead letters read from one shard since its last flush."""

    shard_id: str
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    first_at: float | None = None

    def add(self, records: list[Record]) -> None:
        for record in records:
            converted = to_row(record, self.shard_id)
            if isinstance(converted, Rejection):
                self.rejections.append(converted)
            else:
                self.rows.append(converted)
        if records and self.first_at is None:
            self.first_at = time.monotonic()

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejections)

    def age(self) -> float:
        return 0.0 if self.first_at is None else time.monotonic() - self.first_at

    def clear(self) -> None:
        self.rows.clear()
        self.rejections.clear()
        self.first_at = None


@dataclass(frozen=True)
class FlushResult:
    inserted: int
    duplicates: int
    rejected: int
    seconds: float


class PostgresSink:
    def __init__(self, pool: asyncpg.Pool, leases: LeaseTable) -> None:
        self.pool = pool
        self.leases = leases

    @staticmethod
    async def _insert(conn: Connection, staged: int) -> int:
        """Move the staged rows into `fraud_predictions` and the aggregates; the number of new rows."""
        try:
            async with conn.transaction():
                await conn.execute(_INSERT)
        except asyncpg.UniqueViolationError:
            status = await conn.execute(_INSERT_NEW)
            inserted = int(status.rsplit(" ", 1)[1])
            if inserted:
                await conn.execute(_ADD_TO_ROLLUPS, INSERTED)
            return inserted
        await conn.execute(_ADD_TO_ROLLUPS, STAGING)
        return staged

    async def flush(self, lease: Lease, buffer: ShardBuffer, checkpoint: str) -> FlushResult:
        """Write the buffer and move the checkpoint to `checkpoint` in one transaction (LeaseLost if fenced)."""
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = 0
            if buffer.rows:
                await conn.copy_records_to_table(STAGING, records=buffer.rows, columns=list(COLUMNS))
                inserted = await self._insert(conn, len(buffer.rows))
            if buffer.rejections:
                await conn.executemany(
                    """INSERT INTO rejected_records (stage, stream, shard_id, sequence_number, sub_sequence,
                                                     partition_key, payload, reason)
                       VALUES ('consumer', $1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (stream, shard_id, sequence_number, sub_sequence)
                       WHERE sequence_number IS NOT NULL DO NOTHING""",
                    [
                        (
                            self.leases.stream,
                            buffer.shard_id,
                            Decimal(r.record.sequence_number),
                            r.record.sub_sequence,
                            r.record.partition_key,
                            r.record.data,
                            r.reason,
                        )
                        for r in buffer.rejections
                    ],
                )
            await self.leases.checkpoint(conn, lease, checkpoint)
        result = FlushResult(
            inserted, len(buffer.rows) - inserted, len(buffer.rejections), time.perf_counter() - started
        )
        buffer.clear()
        return result
