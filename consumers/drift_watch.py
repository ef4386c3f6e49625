"""The hourly drift watch, run by the consumer workers (the processes that own the database side).

Each tick, one worker (a transaction-scoped advisory lock) measures the hour just ended, with its late rows,
and the current hour so far; every worker then exposes the last complete hour's reports as gauges, so an
alert rule fires whichever worker is scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from consumers.metrics import ConsumerMetrics
from fraudflow.drift import latest_complete, watch
from fraudflow.logging import get_logger

log = get_logger(__name__)
LOCK = 0x6672_6466  # the drift watch's advisory lock ("frdf")


async def measure_once(pool: asyncpg.Pool, models_root: Path, metrics: ConsumerMetrics) -> None:
    async with pool.acquire() as conn, conn.transaction():
        # An hour of traffic is binned in one statement: more than a flush is allowed.
        await conn.execute("SET LOCAL statement_timeout = '10min'")
        if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
            reports = await watch(conn, datetime.now(UTC), models_root)
            log.info("drift measured", versions=len(reports), transactions=sum(r.transactions for r in reports))
        metrics.drift(await latest_complete(conn))


async def drift_watch(
    pool: asyncpg.Pool, models_root: Path, metrics: ConsumerMetrics, interval_s: float, stop: asyncio.Event
) -> None:
    """Until `stop`: measure every `interval_s`; a failure is logged and tried again at the next tick."""
    while not stop.is_set():
        try:
            await measure_once(pool, models_root, metrics)
        except (asyncpg.PostgresError, OSError, TimeoutError) as error:
            log.warning("drift watch failed, trying again at the next tick", error=str(error)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
