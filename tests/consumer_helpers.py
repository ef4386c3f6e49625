"""Helpers for consumer tests: valid events on a stream, workers run in-process, and waiting on the table."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

from consumers.config import ConsumerConfig
from consumers.coordinator.scheduler import Scheduler
from consumers.processor.sink import create_staging
from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.events import encode_event, sample_event

if TYPE_CHECKING:
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef

FAST = ConsumerConfig(
    failover_s=1.5,
    shard_sync_interval_s=1.0,
    idle_wait_s=0.05,
    flush_interval_s=0.05,
    backoff_base_s=0.02,
    backoff_cap_s=0.2,
    shutdown_timeout_s=10,
    idle_in_transaction_timeout_s=3.0,
    lock_timeout_s=1.0,
)


def event(event_id: uuid.UUID | None = None, user: str = "u1", country: str = " fr ") -> dict[str, Any]:
    """A valid event; country and place padded with spaces, to check the consumer's reference transforms."""
    return sample_event(
        event_id=str(event_id or uuid.uuid4()),
        user_id=user,
        geo={"country": country, "region": " IDF ", "city": " Paris ", "latitude": 1.0, "longitude": 2.0},
    )


async def put(settings: Settings, bodies: list[bytes], keys: list[str]) -> None:
    async with kinesis_client(settings) as client:
        for start in range(0, len(bodies), 500):
            chunk: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": b, "PartitionKey": k}
                for b, k in zip(bodies[start : start + 500], keys[start : start + 500], strict=True)
            ]
            response = await client.put_records(StreamName=settings.stream_name, Records=chunk)
            assert response["FailedRecordCount"] == 0


async def put_events(settings: Settings, count: int, users: int = 13, review_every: int = 0) -> list[str]:
    """`count` events of `users` users; with `review_every` N, every Nth is decided `review` (a case)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    bodies = []
    for n, i in enumerate(ids):
        body = event(uuid.UUID(i), f"user-{n % users}")
        if review_every and n % review_every == 0:
            body["decision"] = "review"
        bodies.append(encode_event(body))
    await put(settings, bodies, [f"user-{n % users}" for n in range(count)])
    return ids


async def pool_for(settings: Settings) -> asyncpg.Pool:
    assert settings.static_database_url
    return await asyncpg.create_pool(
        settings.static_database_url,
        min_size=1,
        max_size=6,
        init=create_staging,
        server_settings=FAST.session_settings(),
    )


@asynccontextmanager
async def worker(settings: Settings, worker_id: str, config: ConsumerConfig = FAST) -> AsyncIterator[Scheduler]:
    """A consumer worker running in this event loop; stopped gracefully on exit."""
    pool = await pool_for(settings)
    stop = asyncio.Event()
    async with kinesis_client(settings) as client:
        scheduler = Scheduler(client, pool, settings.stream_name, worker_id, config)
        task = asyncio.create_task(scheduler.run(stop))
        try:
            yield scheduler
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
    await pool.close()


async def wait_until(check: Callable[[], Awaitable[bool]], deadline_s: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


async def stored(db: asyncpg.Connection) -> tuple[int, int]:
    row = await db.fetchrow("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM fraud_predictions")
    assert row is not None
    return int(row["n"]), int(row["d"])


async def aggregated(db: asyncpg.Connection) -> dict[str, int]:
    """How many rows each quarter-hour aggregate counted (each equals the stored rows when exactly once)."""
    row = await db.fetchrow(
        """SELECT (SELECT coalesce(sum(transactions), 0) FROM fraud_stats_15m) AS stats,
                  (SELECT coalesce(sum(transactions), 0) FROM fraud_places_15m) AS places,
                  (SELECT coalesce(sum(n), 0) FROM fraud_histograms_15m WHERE metric = 'latency') AS latency,
                  (SELECT coalesce(sum(n), 0) FROM fraud_histograms_15m WHERE metric = 'fraud_proba') AS proba,
                  (SELECT coalesce(sum(n), 0) FROM fraud_histograms_15m WHERE metric = 'anomaly_score') AS anomaly,
                  (SELECT coalesce(sum(transactions), 0) FROM fraud_dimensions_15m WHERE dimension = 'country')
                      AS country,
                  (SELECT coalesce(sum(transactions), 0) FROM fraud_dimensions_15m WHERE dimension = 'source')
                      AS source,
                  (SELECT coalesce(sum(transactions), 0) FROM fraud_dimensions_15m WHERE dimension = 'device_type')
                      AS device_type"""
    )
    assert row is not None
    return {name: int(value) for name, value in row.items()}
