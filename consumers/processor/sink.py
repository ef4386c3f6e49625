"""The record processor: exactly once into PostgreSQL.

A flush is one transaction: COPY into a session-local staging table, INSERT into `fraud_predictions`, the
rows actually inserted added to the dashboard's quarter-hour aggregates and their review decisions to the
review queue's cases, the challenger's shadow scores into `challenger_scores`, dead letters into
`rejected_records`, and the shard's checkpoint, fenced by the lease's owner and epoch. A worker that lost
its lease cannot commit, and a commit covers exactly the records up to its checkpoint, so no row is written
twice or skipped, whatever crashes.

Events are idempotent by `event_id` (a producer retry publishes the same event twice). Duplicates are rare,
so the INSERT first runs plain, in a savepoint; only when a unique violation rolls it back do the rows go
through `ON CONFLICT (event_id) DO NOTHING`, which costs more on the server and must copy the rows it
inserted aside for the aggregates.

A row PostgreSQL refuses for its content (validation should let none through, but a retry forever would stall
the shard) fails the whole transaction; the flush then runs again with the rows in savepoints, halving any
batch that fails until each refused row stands alone, and dead-letters those rows with PostgreSQL's message.
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
from fraudflow.db import Connection
from fraudflow.events import storable_text
from fraudflow.heartbeats import ApiHeartbeat
from fraudflow.logging import get_logger
from fraudflow.shadow_scores import ShadowScores

log = get_logger(__name__)
STAGING = "fraudflow_staging"
INSERTED = "fraudflow_inserted"  # this flush's new rows (not the duplicates), for the aggregates
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGED_COLUMNS = ", ".join(f'"{c}"::text AS "{c}"' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)
_FROM_STAGING = ", ".join(f'"{c}"::{AS_TEXT[c]}' if c in AS_TEXT else f'"{c}"' for c in COLUMNS)
_INSERT = f"INSERT INTO fraud_predictions ({_COLUMN_LIST}) SELECT {_FROM_STAGING} FROM {STAGING}"
_INSERT_NEW = (
    f"WITH new AS ({_INSERT} ON CONFLICT (event_id) DO NOTHING RETURNING *) INSERT INTO {INSERTED} SELECT * FROM new"
)
# The new rows go into the dashboard's aggregates, and their review decisions into cases (docs/reviews.md).
_ADD_TO_ROLLUPS = "SELECT fraudflow_add_to_rollups($1::regclass), fraudflow_open_cases($1::regclass)"
# Errors that say a row's content cannot be stored (SQLSTATE classes 22 and 23, and the ValueError or
# OverflowError of asyncpg's encoders, e.g. a float beyond `real`): retrying cannot help, so the rows are
# isolated and dead-lettered instead.
CONTENT_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, OverflowError)


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
    sources: list[Record] = field(default_factory=list)  # the record of each row, to dead-letter it
    rejections: list[Rejection] = field(default_factory=list)
    heartbeats: list[ApiHeartbeat] = field(default_factory=list)
    shadows: list[ShadowScores] = field(default_factory=list)
    first_at: float | None = None

    def add(self, records: list[Record]) -> None:
        for record in records:
            converted = to_row(record, self.shard_id)
            if isinstance(converted, Rejection):
                self.rejections.append(converted)
            elif isinstance(converted, ApiHeartbeat):
                self.heartbeats.append(converted)
            elif isinstance(converted, ShadowScores):
                self.shadows.append(converted)
            else:
                self.rows.append(converted)
                self.sources.append(record)
        if records and self.first_at is None:
            self.first_at = time.monotonic()

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejections) + len(self.heartbeats) + len(self.shadows)

    def age(self) -> float:
        return 0.0 if self.first_at is None else time.monotonic() - self.first_at

    def clear(self) -> None:
        self.rows.clear()
        self.sources.clear()
        self.rejections.clear()
        self.heartbeats.clear()
        self.shadows.clear()
        self.first_at = None


@dataclass(frozen=True)
class FlushResult:
    lease: Lease  # at its new checkpoint: the next flush goes on from there
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
        try:
            committed, inserted, refused = await self._commit(lease, buffer, checkpoint, isolate=False)
        except CONTENT_ERRORS as error:
            log.warning(
                "flush refused for a row's content, isolating the rows",
                shard=buffer.shard_id,
                checkpoint=checkpoint,
                error=_message(error),
            )
            committed, inserted, refused = await self._commit(lease, buffer, checkpoint, isolate=True)
        result = FlushResult(
            committed,
            inserted,
            len(buffer.rows) - inserted - len(refused),
            len(buffer.rejections) + len(refused),
            time.perf_counter() - started,
        )
        buffer.clear()
        return result

    async def _commit(
        self, lease: Lease, buffer: ShardBuffer, checkpoint: str, isolate: bool
    ) -> tuple[Lease, int, list[Rejection]]:
        async with self.pool.acquire() as conn, conn.transaction():
            inserted, refused = 0, list[Rejection]()
            if buffer.rows and isolate:
                inserted, refused = await self._store_isolating(conn, buffer.rows, buffer.sources)
            elif buffer.rows:
                inserted = await self._store(conn, buffer.rows)
            if rejections := buffer.rejections + refused:
                await self._dead_letter(conn, buffer.shard_id, rejections)
            if buffer.heartbeats:
                await _record_heartbeats(conn, buffer.heartbeats)
            if buffer.shadows:
                await _record_shadow_scores(conn, buffer.shadows)
            committed = await self.leases.checkpoint(conn, lease, checkpoint)
        return committed, inserted, refused

    async def _store(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        await conn.copy_records_to_table(STAGING, records=rows, columns=list(COLUMNS))
        return await self._insert(conn, len(rows))

    async def _store_isolating(
        self, conn: Connection, rows: list[tuple[Any, ...]], sources: list[Record]
    ) -> tuple[int, list[Rejection]]:
        """Store what PostgreSQL accepts, each part in a savepoint; the rows it refuses, one by one."""
        inserted, refused = 0, list[Rejection]()
        parts = [(0, len(rows))]
        while parts:
            start, end = parts.pop()
            try:
                async with conn.transaction():
                    inserted += await self._store(conn, rows[start:end])
                    await conn.execute(f"TRUNCATE {STAGING}, {INSERTED}")  # the next part starts empty
            except CONTENT_ERRORS as error:
                if end - start == 1:
                    refused.append(Rejection(sources[start], f"refused by PostgreSQL: {_message(error)}"))
                else:
                    middle = (start + end) // 2
                    parts += [(middle, end), (start, middle)]
        return inserted, refused

    async def _dead_letter(self, conn: Connection, shard_id: str, rejections: list[Rejection]) -> None:
        await conn.executemany(
            """INSERT INTO rejected_records (stage, stream, shard_id, sequence_number, sub_sequence,
                                             partition_key, payload, reason)
               VALUES ('consumer', $1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (stream, shard_id, sequence_number, sub_sequence)
               WHERE sequence_number IS NOT NULL DO NOTHING""",
            [
                (
                    self.leases.stream,
                    shard_id,
                    Decimal(r.record.sequence_number),
                    r.record.sub_sequence,
                    # A dead letter must never fail for its own content: the payload is bytes, texts lose NULs.
                    storable_text(r.record.partition_key),
                    r.record.data,
                    storable_text(r.reason),
                )
                for r in rejections
            ],
        )


async def _record_heartbeats(conn: Connection, heartbeats: list[ApiHeartbeat]) -> None:
    """Keep the largest count of each process and minute (counts are cumulative: any order, any repeat)."""
    await conn.executemany(
        """INSERT INTO api_heartbeats AS t (process, minute, answered, published, unavailable, reported_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (process, minute) DO UPDATE
              SET answered = greatest(t.answered, excluded.answered),
                  published = greatest(t.published, excluded.published),
                  unavailable = greatest(t.unavailable, excluded.unavailable),
                  reported_at = greatest(t.reported_at, excluded.reported_at)""",
        sorted(  # in key order, so concurrent flushes cannot deadlock
            {
                (beat.process, m.minute): (beat.process, m.minute, m.answered, m.published, m.unavailable, beat.sent_at)
                for beat in heartbeats
                for m in beat.minutes
            }.values()
        ),
    )
    await conn.execute("DELETE FROM api_heartbeats WHERE minute < now() - interval '7 days'")


async def _record_shadow_scores(conn: Connection, records: list[ShadowScores]) -> None:
    """The challenger's scores, once per event and challenger (a record read twice stores once)."""
    await conn.execute(
        """INSERT INTO challenger_scores (event_id, challenger_version, champion_version, champion_proba,
                                          champion_decision, fraud_proba, anomaly_score, decision, scored_at)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::real[], $5::text[], $6::real[],
                                $7::real[], $8::text[], $9::timestamptz[])
           ON CONFLICT (event_id, challenger_version) DO NOTHING""",
        [e for r in records for e in r.event_ids],
        [r.challenger_version for r in records for _ in r.event_ids],
        [r.champion_version for r in records for _ in r.event_ids],
        [p for r in records for p in r.champion_proba],
        [d for r in records for d in r.champion_decision],
        [p for r in records for p in r.fraud_proba],
        [a for r in records for a in r.anomaly_score],
        [d for r in records for d in r.decision],
        [r.scored_at for r in records for _ in r.event_ids],
    )


def _message(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]
