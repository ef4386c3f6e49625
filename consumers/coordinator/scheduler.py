"""The scheduler: shard sync, lease renewal and taking, and one ShardConsumer task per held lease."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import asyncpg

from consumers.config import ConsumerConfig
from consumers.leases.coordinator import LeaseCoordinator
from consumers.leases.shard_sync import ShardInfo, ShardSync
from consumers.leases.table import SHARD_END, Lease, LeaseLost, LeaseTable
from consumers.lifecycle.shard_consumer import ShardConsumer
from consumers.metrics import ConsumerMetrics
from consumers.processor.sink import PostgresSink
from consumers.retrieval.fetcher import ShardFetcher
from fraudflow.logging import get_logger
from fraudflow.retry import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

log = get_logger(__name__)


class Scheduler:
    def __init__(
        self,
        client: KinesisClient,
        pool: asyncpg.Pool,
        stream: str,
        worker_id: str,
        config: ConsumerConfig,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.worker_id = worker_id
        self.config = config
        self.metrics = metrics or ConsumerMetrics()
        self.table = LeaseTable(pool, config.application, stream)
        self.sink = PostgresSink(pool, self.table)
        self.coordinator = LeaseCoordinator(self.table, worker_id, config)
        self.shard_sync = ShardSync(client, stream, self.table, config)
        self.shards: dict[str, ShardInfo] = {}
        self.consumers: dict[str, tuple[ShardConsumer, asyncio.Task[None]]] = {}
        self._sync_now = asyncio.Event()
        # Monotonic time of the lease loop's last round (and of start-up's shard sync attempts): /healthz.
        self.last_round = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down gracefully (flush, checkpoint, release)."""
        backoff = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s * 2)
        while not await self._guard("shard sync", self.sync_shards()):  # Kinesis or the stream not there yet
            self.last_round = time.monotonic()  # waiting on purpose is not being stuck
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())
            if stop.is_set():
                return
        loops = [asyncio.create_task(loop(), name=loop.__name__) for loop in (self._shard_sync_loop, self._lease_loop)]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.shutdown()

    async def sync_shards(self) -> None:
        self.shards = await self.shard_sync.run()

    async def _shard_sync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), self.config.shard_sync_interval_s)
            self._sync_now.clear()
            await self._guard("shard sync", self.sync_shards())

    async def _guard(self, what: str, work: Awaitable[None]) -> bool:
        """Run `work`; a failure is counted and logged, and the caller retries later. Whether it succeeded."""
        try:
            await work
        except Exception as error:  # PostgreSQL, network or botocore: the loop must survive and retry
            self.metrics.retries.labels(what).inc()
            log.warning("retrying after a failure", what=what, error=type(error).__name__, detail=str(error)[:200])
            return False
        return True

    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_steal = loop.time() + self.config.steal_every_s
        while True:
            await self._guard("lease renewal", self._renew())
            steal = loop.time() >= next_steal
            if steal:
                next_steal = loop.time() + self.config.steal_every_s
            await self._guard("lease taking", self._take(steal))
            await self._guard("reaping", self._reap())
            self.last_round = time.monotonic()
            self.metrics.leases_held.set(len(self.coordinator.held))
            self.metrics.workers.set(self.coordinator.workers_seen)
            await asyncio.sleep(self.config.renew_every_s)

    async def _renew(self) -> None:
        for lease in await self.coordinator.renew():
            self.metrics.leases_lost.inc()
            log.warning("lease lost", shard=lease.shard_id)
            self._stop_consumer(lease.shard_id, graceful=False)

    async def _take(self, steal: bool) -> None:
        for lease in await self.coordinator.take(steal):
            self.metrics.leases_taken.inc()
            if lease.shard_id not in self.shards:
                await self.sync_shards()
            shard = self.shards.get(lease.shard_id)
            if shard is None:
                continue
            self._start_consumer(lease, shard)

    def _start_consumer(self, lease: Lease, shard: ShardInfo) -> None:
        fetcher = ShardFetcher(
            self.client,
            self.stream,
            shard,
            self.config,
            on_retry=lambda reason: self.metrics.retries.labels(reason).inc(),
        )
        consumer = ShardConsumer(
            lease,
            fetcher,
            self.sink,
            self.table,
            self.config,
            self.metrics,
            on_shard_end=lambda _: self._sync_now.set(),
        )
        task = asyncio.create_task(self._run_consumer(consumer), name=f"shard-{shard.shard_id}")
        self.consumers[shard.shard_id] = (consumer, task)

    async def _run_consumer(self, consumer: ShardConsumer) -> None:
        try:
            await consumer.run()
        except LeaseLost:
            log.warning("lease lost while flushing; buffer dropped", shard=consumer.shard_id)
            self.metrics.leases_lost.inc()
            self.coordinator.forget(consumer.shard_id)

    async def _reap(self) -> None:
        """Forget consumers that finished (shard ended); release, counted, the leases of those that failed."""
        for shard_id, (consumer, task) in list(self.consumers.items()):
            if not task.done():
                continue
            del self.consumers[shard_id]
            if task.cancelled():
                continue
            if (error := task.exception()) is not None:
                self.metrics.shard_failures.labels(shard_id).inc()
                log.error(
                    "shard consumer failed",
                    shard=shard_id,
                    epoch=consumer.lease.epoch,
                    checkpoint=consumer.checkpoint,
                    read_up_to=consumer.buffer_checkpoint,
                    error=repr(error)[:500],
                )
                if (lease := self.coordinator.held.get(shard_id)) is not None:
                    self.coordinator.forget(shard_id)
                    await self.table.release_failed(lease, repr(error))
            elif consumer.checkpoint == SHARD_END:
                self.coordinator.forget(shard_id)

    def _stop_consumer(self, shard_id: str, graceful: bool) -> None:
        entry = self.consumers.pop(shard_id, None)
        if entry is None:
            return
        consumer, task = entry
        if graceful:
            consumer.request_stop()
        else:
            task.cancel()

    async def shutdown(self) -> None:
        entries = list(self.consumers.values())
        for consumer, _ in entries:
            consumer.request_stop()
        tasks = [task for _, task in entries]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for lease in list(self.coordinator.held.values()):
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self.table.release(lease)
        self.coordinator.held.clear()
        self.consumers.clear()
        log.info("consumer stopped", worker=self.worker_id)
