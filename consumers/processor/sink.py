"""The record processor: exactly once into PostgreSQL.

A flush is one transaction: COPY into a session-local staging table, INSERT ... ON CONFLICT (event_id) DO
NOTHING into `fraud_predictions`, the rows actually inserted added to the dashboard's quarter-hour
aggregates, dead letters into `rejected_records`, and the shard's checkpoint, fenced by the lease's owner
and epoch. A worker that lost its lease cannot commit, and a commit covers exactly
the records up to its checkpoint, so no row is written twice or skipped, whatever crashes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from consumers.leases.table import Lease, LeaseTable
from consumers.processor.rows import AS_TEXT, COLUMNS, Rejection, to_row
from consumers.retrieval.fetcher import Record

STAGING = "fraudflow_staging"
INSERTED = "fraudflow_inserted"  # this flush's new rows (not the duplicates), for the aggregates
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGED_COLUMNS = ", ".join(f'"{c}"::text AS "{c}"' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)
_FROM_STAGING = ", ".join(f'"{c}"::{AS_TEXT[c]}' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)


async def create_staging(conn: asyncpg.Connection) -> None:
    """Pool `init` hook: the staging tables of one connection, emptied at every commit."""
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS "
        f"SELECT {_STAGED_COLUMNS} FROM fraud_predictions WITH NO DATA;"
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

    async def flush(self, lease: Lease, buffer: ShardBuffer, checkpoint: str) -> FlushResult:
        """Write the buffer and move the checkpoint to `checkpoint` in one transaction (LeaseLost if fenced)."""
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = 0
            if buffer.rows:
                await conn.copy_records_to_table(STAGING, records=buffer.rows, columns=list(COLUMNS))
                status = await conn.execute(
                    f"WITH new AS (INSERT INTO fraud_predictions ({_COLUMN_LIST}) SELECT {_FROM_STAGING} "
                    f"FROM {STAGING} ON CONFLICT (event_id) DO NOTHING RETURNING *) "
                    f"INSERT INTO {INSERTED} SELECT * FROM new"
                )
                inserted = int(status.rsplit(" ", 1)[1])
                if inserted:
                    await conn.execute("SELECT fraudflow_add_to_rollups($1::regclass)", INSERTED)
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
