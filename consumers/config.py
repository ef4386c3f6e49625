"""Every timing and bound of the consumer, named and documented, with its default."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class InitialPosition(enum.StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


@dataclass(frozen=True)
class ConsumerConfig:
    application: str = "fraudflow-consumer"
    # A lease whose counter has not moved for this long (observer's monotonic clock) is free to take.
    failover_s: float = 10.0
    # Leases are renewed every failover/3; free leases are taken at every renewal round, and one lease is
    # stolen from the most loaded worker at most every 2 x failover.
    renew_interval_s: float | None = None
    steal_interval_s: float | None = None
    # ListShards runs this often (and at once when a shard ends) to create leases for new shards.
    shard_sync_interval_s: float = 30.0
    # GetRecords: page size (the service allows up to 10,000; a page the size of a flush keeps memory flat:
    # each shard holds at most one page being flushed and one prefetched), wait when caught up, read limits.
    get_records_limit: int = 2_000
    idle_wait_s: float = 0.2
    reads_per_second: float = 5.0
    read_bytes_per_second: float = 2 * 1024 * 1024
    # Backoff on throttling, 5xx and transport errors (jittered, doubling up to the cap).
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 5.0
    # Where a shard without a checkpoint starts (children of a reshard always start at TRIM_HORIZON).
    initial_position: InitialPosition = InitialPosition.TRIM_HORIZON
    initial_timestamp: datetime | None = None
    # A shard's lag (MillisBehindLatest) is written to its lease this often, for `fraudflow consume status`;
    # a child shard polls its parents' leases this often until they reach SHARD_END.
    lag_report_interval_s: float = 2.0
    parent_poll_interval_s: float = 1.0
    # A shard's buffer is flushed (one transaction) at this many rows or this age, whichever comes first.
    flush_rows: int = 2_000
    flush_interval_s: float = 0.25
    # Graceful shutdown: flush, checkpoint and release within this bound.
    shutdown_timeout_s: float = 20.0
    # PostgreSQL session bounds: a worker frozen inside a flush (SIGSTOP, a paused VM, a partition) has its
    # transaction ended by the server within the failover time, instead of holding locks until TCP gives up
    # (hours); a flush waiting on a lock or running away fails and is retried.
    idle_in_transaction_timeout_s: float = 10.0
    lock_timeout_s: float = 5.0
    statement_timeout_s: float = 30.0
    tcp_keepalive_idle_s: int = 10

    @property
    def renew_every_s(self) -> float:
        return self.renew_interval_s or self.failover_s / 3

    @property
    def steal_every_s(self) -> float:
        return self.steal_interval_s or self.failover_s * 2

    def session_settings(self) -> dict[str, str]:
        """PostgreSQL settings for each of the worker's sessions (asyncpg's `server_settings`)."""
        return {
            "idle_in_transaction_session_timeout": str(int(self.idle_in_transaction_timeout_s * 1000)),
            "lock_timeout": str(int(self.lock_timeout_s * 1000)),
            "statement_timeout": str(int(self.statement_timeout_s * 1000)),
            "tcp_keepalives_idle": str(self.tcp_keepalive_idle_s),
            "tcp_keepalives_interval": str(max(1, self.tcp_keepalive_idle_s // 2)),
            "tcp_keepalives_count": "3",
        }
