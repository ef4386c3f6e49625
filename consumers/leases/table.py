"""The lease table (`kinesis_leases`): one row per (application, stream, shard).

Every write that matters is conditional: renewals and checkpoints on the owner and the ownership epoch,
takes on the lease counter observed. A worker that lost a lease therefore cannot renew it or commit for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import asyncpg

from fraudflow.db import Connection
from fraudflow.events import storable_text

SHARD_END = "SHARD_END"
TRIM_HORIZON = "TRIM_HORIZON"


class LeaseLost(RuntimeError):
    """This worker no longer owns the lease (taken over, or its epoch moved on)."""


@dataclass(frozen=True)
class Lease:
    shard_id: str
    owner: str | None
    lease_counter: int
    epoch: int
    checkpoint: str
    parent_shard_ids: list[str]
    millis_behind_latest: int | None = None
    updated_at: datetime | None = None
    checkpointed_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END


@dataclass(frozen=True)
class NewShard:
    shard_id: str
    parent_shard_ids: list[str]
    starting_hash_key: str
    ending_hash_key: str
    checkpoint: str


_COLUMNS = (
    "shard_id, owner, lease_counter, epoch, checkpoint, parent_shard_ids, millis_behind_latest, "
    "updated_at, checkpointed_at"
)

# A write to a held lease matches only while this worker still owns it at this epoch (the fence); the
# arguments are LeaseTable._fence(lease).
_FENCED = "application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4 AND epoch = $5"


def _lease(row: asyncpg.Record) -> Lease:
    return Lease(**dict(row))


class LeaseTable:
    def __init__(self, pool: asyncpg.Pool, application: str, stream: str) -> None:
        self.pool = pool
        self.application = application
        self.stream = stream
        self.identity: str | None = None  # set by claim_for once the stream is known

    def _fence(self, lease: Lease) -> tuple[str, str, str, str | None, int]:
        return self.application, self.stream, lease.shard_id, lease.owner, lease.epoch

    async def all(self) -> list[Lease]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM kinesis_leases WHERE application = $1 AND stream = $2 ORDER BY shard_id",
            self.application,
            self.stream,
        )
        return [_lease(row) for row in rows]

    async def claim_for(self, identity: str) -> int:
        """Tie the leases to this stream's identity; leases of an earlier stream of the same name are deleted
        (their checkpoints point into shards that no longer exist). Returns how many were deleted."""
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                """DELETE FROM kinesis_leases
                    WHERE application = $1 AND stream = $2 AND stream_identity <> $3""",
                self.application,
                self.stream,
                identity,
            )
            await conn.execute(
                """UPDATE kinesis_leases SET stream_identity = $3
                    WHERE application = $1 AND stream = $2 AND stream_identity IS NULL""",
                self.application,
                self.stream,
                identity,
            )
        self.identity = identity
        return int(status.rsplit(" ", 1)[1])

    async def create_missing(self, shards: list[NewShard]) -> list[str]:
        """Create leases for shards that have none; returns the shard ids created."""
        created = []
        async with self.pool.acquire() as conn, conn.transaction():
            for s in shards:
                inserted = await conn.fetchval(
                    """INSERT INTO kinesis_leases (application, stream, shard_id, checkpoint, parent_shard_ids,
                                                   starting_hash_key, ending_hash_key, stream_identity)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING shard_id""",
                    self.application,
                    self.stream,
                    s.shard_id,
                    s.checkpoint,
                    s.parent_shard_ids,
                    Decimal(s.starting_hash_key),
                    Decimal(s.ending_hash_key),
                    self.identity,
                )
                if inserted:
                    created.append(inserted)
        return created

    async def take(self, shard_id: str, owner: str, observed_counter: int) -> Lease | None:
        """Become the owner if nobody renewed the lease since we observed `observed_counter`."""
        row = await self.pool.fetchrow(
            f"""UPDATE kinesis_leases
                   SET owner = $4, epoch = epoch + 1, lease_counter = lease_counter + 1, updated_at = now()
                 WHERE application = $1 AND stream = $2 AND shard_id = $3 AND lease_counter = $5
             RETURNING {_COLUMNS}""",
            self.application,
            self.stream,
            shard_id,
            owner,
            observed_counter,
        )
        return _lease(row) if row else None

    async def renew(self, lease: Lease) -> Lease | None:
        row = await self.pool.fetchrow(
            f"""UPDATE kinesis_leases SET lease_counter = lease_counter + 1, updated_at = now()
                 WHERE {_FENCED}
             RETURNING {_COLUMNS}""",
            *self._fence(lease),
        )
        return _lease(row) if row else None

    async def release(self, lease: Lease) -> bool:
        """Give the lease up so another worker can take it at once (its counter moves, owner clears)."""
        status = await self.pool.execute(
            f"""UPDATE kinesis_leases SET owner = NULL, lease_counter = lease_counter + 1, updated_at = now()
                WHERE {_FENCED}""",
            *self._fence(lease),
        )
        return status.endswith(" 1")

    async def release_failed(self, lease: Lease, error: str) -> bool:
        """Release a lease whose shard consumer failed, counting the failure and keeping its error."""
        status = await self.pool.execute(
            f"""UPDATE kinesis_leases
                   SET owner = NULL, lease_counter = lease_counter + 1, updated_at = now(),
                       failures = failures + 1, last_error = $6, last_error_at = now()
                 WHERE {_FENCED}""",
            *self._fence(lease),
            storable_text(error)[:1000],
        )
        return status.endswith(" 1")

    async def report_lag(self, lease: Lease, millis_behind: int) -> None:
        await self.pool.execute(
            f"""UPDATE kinesis_leases SET millis_behind_latest = $6
                WHERE {_FENCED}""",
            *self._fence(lease),
            millis_behind,
        )

    async def delete(self, shard_ids: list[str]) -> None:
        await self.pool.execute(
            "DELETE FROM kinesis_leases WHERE application = $1 AND stream = $2 AND shard_id = ANY($3::text[])",
            self.application,
            self.stream,
            shard_ids,
        )

    async def checkpoint(self, conn: Connection, lease: Lease, position: str) -> Lease:
        """Advance the checkpoint from `lease.checkpoint` to `position` inside the caller's transaction, fenced
        by owner and epoch; returns the lease at its new checkpoint.

        The checkpoint must still be the one this worker last committed: if PostgreSQL lost a commit it had
        acknowledged (a crash without synchronous commit, an asynchronous replica promoted), the rows of that
        commit are gone too, and going on from the worker's memory would skip them. The lease is then given
        up as lost, and whoever takes it re-reads from the checkpoint that is really there."""
        status = await conn.execute(
            f"""UPDATE kinesis_leases SET checkpoint = $6, checkpointed_at = now()
                WHERE {_FENCED} AND checkpoint = $7""",
            *self._fence(lease),
            position,
            lease.checkpoint,
        )
        if not status.endswith(" 1"):
            raise LeaseLost(
                f"lease on {lease.shard_id} (epoch {lease.epoch}, checkpoint {lease.checkpoint}) is no longer ours"
            )
        return replace(lease, checkpoint=position)
