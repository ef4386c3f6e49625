"""The consumer worker process, as `api/main.py` is the API's: pool, metrics server, signals, scheduler.

A worker waits out what an orchestrator would restart it for anyway: PostgreSQL unreachable at start-up is
retried (with backoff, until stopped), as the scheduler retries Kinesis. What retrying cannot fix (no schema,
bad credentials) stops it with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from consumers.config import ConsumerConfig
from consumers.coordinator.scheduler import Scheduler
from consumers.drift_watch import drift_watch
from consumers.emf import EmfEmitter
from consumers.health import serve_health_and_metrics
from consumers.metrics import ConsumerMetrics
from consumers.processor.sink import create_staging
from fraudflow.aws import client_config, kinesis_client
from fraudflow.config import Settings
from fraudflow.db.target import DatabaseTarget
from fraudflow.errors import ExpectedError
from fraudflow.logging import get_logger
from fraudflow.registry import default_models_root
from fraudflow.retry import Backoff

log = get_logger(__name__)
_UNREACHABLE = (OSError, TimeoutError, asyncpg.CannotConnectNowError)


class WorkerError(ExpectedError):
    """A start-up failure that retrying cannot fix; the message is for the operator."""


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    stream: str
    config: ConsumerConfig
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    emf_interval_s: float | None = None  # CloudWatch embedded metric format lines on stdout this often
    # The drift watch: the registry whose training references it compares with, and how often (None: off).
    models_root: Path | None = None
    drift_interval_s: float | None = 3600.0


@asynccontextmanager
async def stop_signals(already_stopped: bool = False) -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if already_stopped:
        stop.set()
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@asynccontextmanager
async def connection_pool(
    database: DatabaseTarget, max_size: int, config: ConsumerConfig, stop: asyncio.Event
) -> AsyncIterator[asyncpg.Pool]:
    """The worker's pool (each connection with its staging tables), waiting for PostgreSQL if it is down."""
    backoff = Backoff(0.5, 10.0)
    pool: asyncpg.Pool | None = None
    while pool is None:
        try:
            pool = await asyncpg.create_pool(
                **database.connect_kwargs(),
                min_size=1,
                max_size=max_size,
                init=create_staging,
                server_settings=config.session_settings(),
                timeout=10,
            )
        except asyncpg.UndefinedTableError:
            raise WorkerError("the database has no fraudflow schema: run `fraudflow db migrate` first") from None
        except _UNREACHABLE as error:
            if stop.is_set():
                raise WorkerError(f"stopped while PostgreSQL was unreachable: {error}") from None
            delay = backoff.next_delay()
            log.warning("postgres unreachable at start-up, retrying", error=str(error)[:200], delay_s=round(delay, 2))
            await _wait(stop, delay)
        except asyncpg.PostgresError as error:
            raise WorkerError(f"cannot connect to PostgreSQL: {error}") from None
    try:
        yield pool
    finally:
        await pool.close()


async def run_worker(settings: Settings, database: DatabaseTarget, options: WorkerOptions, stop: asyncio.Event) -> None:
    """Consume until `stop` is set, then flush, checkpoint and release (the scheduler's graceful stop)."""
    if stop.is_set():  # stopped while starting: nothing is held yet
        return
    async with connection_pool(database, settings.db_pool_max, options.config, stop) as pool:
        metrics = ConsumerMetrics()
        async with kinesis_client(settings, client_config(read_timeout=10)) as client:
            log.info(
                "consumer starting",
                worker=options.worker_id,
                stream=options.stream,
                application=options.config.application,
            )
            scheduler = Scheduler(client, pool, options.stream, options.worker_id, options.config, metrics)
            server = None
            if options.metrics_port is not None:
                server = serve_health_and_metrics(
                    metrics.registry,
                    options.metrics_host,
                    options.metrics_port,
                    lambda: scheduler.last_round,
                    stale_after_s=options.config.failover_s * 3,
                )
            emitter = None
            if options.emf_interval_s is not None:
                emitter = asyncio.create_task(
                    EmfEmitter(metrics.registry, options.worker_id).run(options.emf_interval_s)
                )
            watcher = None
            if options.drift_interval_s is not None:
                root = options.models_root or settings.models_dir or default_models_root()
                watcher = asyncio.create_task(drift_watch(pool, root, metrics, options.drift_interval_s, stop))
            try:
                await scheduler.run(stop)
            finally:
                if emitter is not None:
                    emitter.cancel()
                if watcher is not None:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                if server is not None:
                    await asyncio.to_thread(server.shutdown)  # it waits for the serving thread's next poll
