"""One shard from its lease to its end: wait for parents, read, buffer, flush and checkpoint, end.

States, as in the KCL: waiting on parent shards -> initializing (seek to the checkpoint) -> processing ->
shard ended (checkpoint SHARD_END) or shutting down (flush, checkpoint). Losing the lease stops it at once
and drops the buffer: the new owner re-reads from the last committed checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import asyncpg

from consumers.config import ConsumerConfig
from consumers.leases.table import SHARD_END, Lease, LeaseLost, LeaseTable
from consumers.metrics import ConsumerMetrics
from consumers.processor.sink import PostgresSink, ShardBuffer
from consumers.retrieval.fetcher import ShardFetcher
from fraudflow.logging import get_logger
from fraudflow.retry import Backoff

log = get_logger(__name__)


class ShardConsumer:
    def __init__(
        self,
        lease: Lease,
        fetcher: ShardFetcher,
        sink: PostgresSink,
        leases: LeaseTable,
        config: ConsumerConfig,
        metrics: ConsumerMetrics,
        on_shard_end: Callable[[str], None] = lambda shard_id: None,
    ) -> None:
        self.lease = lease
        self.shard_id = lease.shard_id
        self.fetcher = fetcher
        self.sink = sink
        self.leases = leases
        self.config = config
        self.metrics = metrics
        self.on_shard_end = on_shard_end
        self.buffer = ShardBuffer(lease.shard_id)
        self._stop = asyncio.Event()
        self._lag_reported = 0.0
        self.checkpoint = lease.checkpoint
        # The last sequence number whose records are all in the buffer (a prefetched page is not).
        self.buffer_checkpoint: str | None = None

    def request_stop(self) -> None:
        """Graceful: finish the current page, flush, checkpoint, return."""
        self._stop.set()

    async def run(self) -> None:
        if not await self._parents_done():
            return
        if self.checkpoint == SHARD_END:
            return
        self.fetcher.seek(self.checkpoint)
        log.info("shard started", shard=self.shard_id, checkpoint=self.checkpoint, epoch=self.lease.epoch)
        # One page is prefetched while the previous one is being flushed (the KCL's prefetching publisher):
        # Kinesis and PostgreSQL round trips overlap, and memory stays bounded at two pages per shard.
        next_page = asyncio.create_task(self.fetcher.fetch())
        try:
            while not self._stop.is_set():
                page = await next_page
                self.buffer.add(page.records)
                self.buffer_checkpoint = page.last_sequence_number
                self._observe(page.records, page.bytes, page.millis_behind)
                if page.shard_end:
                    await self._flush(SHARD_END)
                    log.info("shard ended", shard=self.shard_id, children=page.child_shard_ids)
                    self.on_shard_end(self.shard_id)
                    return
                if not page.records:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.config.idle_wait_s)
                next_page = asyncio.create_task(self.fetcher.fetch())
                if len(self.buffer) >= self.config.flush_rows or (
                    len(self.buffer) and self.buffer.age() >= self.config.flush_interval_s
                ):
                    await self._flush(page.last_sequence_number)
                await self._report_lag()
        finally:
            next_page.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await next_page
        # Stopping: what was read (and buffered) is committed; a prefetched page is simply read again later.
        if self.buffer_checkpoint is not None and self.buffer_checkpoint != self.checkpoint:
            await self._flush(self.buffer_checkpoint)
        log.info("shard stopped", shard=self.shard_id, checkpoint=self.checkpoint)

    async def _parents_done(self) -> bool:
        """A child waits until every parent lease is at SHARD_END (or gone: cleaned up or aged out)."""
        parents = set(self.lease.parent_shard_ids)
        while parents and not self._stop.is_set():
            leases = {lease.shard_id: lease for lease in await self.leases.all()}
            parents = {p for p in parents if p in leases and not leases[p].finished}
            if parents:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.parent_poll_interval_s)
        return not parents

    def _observe(self, records: Sequence[object], size: int, millis_behind: int | None) -> None:
        if records:
            self.metrics.records.labels(self.shard_id).inc(len(records))
            self.metrics.bytes.labels(self.shard_id).inc(size)
        if millis_behind is not None:
            self.metrics.millis_behind.labels(self.shard_id).set(millis_behind)

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if self.fetcher.millis_behind is None or now - self._lag_reported < self.config.lag_report_interval_s:
            return
        self._lag_reported = now
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.leases.report_lag(self.lease, self.fetcher.millis_behind)

    async def _flush(self, checkpoint: str | None) -> None:
        """Commit the buffer and the checkpoint; PostgreSQL outages are retried, a lost lease is not."""
        if checkpoint is None:
            return
        backoff = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s)
        while True:
            try:
                result = await self.sink.flush(self.lease, self.buffer, checkpoint)
                break
            except LeaseLost:
                raise
            except (
                OSError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError,
                asyncpg.AdminShutdownError,
                asyncpg.LockNotAvailableError,  # lock_timeout: another session holds the rows (and will be ended)
                asyncpg.QueryCanceledError,  # statement_timeout
                asyncpg.DeadlockDetectedError,
                TimeoutError,
            ) as error:
                delay = backoff.next_delay()
                self.metrics.retries.labels("postgres").inc()
                log.warning(
                    "flush failed, retrying", shard=self.shard_id, error=type(error).__name__, delay_s=round(delay, 2)
                )
                await asyncio.sleep(delay)
        self.lease = result.lease
        self.checkpoint = checkpoint
        self.metrics.rows.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.rejected.inc(result.rejected)
        self.metrics.flush_seconds.observe(result.seconds)
        self.metrics.flush_rows.observe(result.inserted + result.duplicates)
