"""`fraudflow consume`: the Kinesis consumer daemon, and `fraudflow consume status`: the lease table."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Annotated

import asyncpg
import typer

from fraudflow.aws import DatabaseTarget, client_config, kinesis_client, resolve_database, resolve_database_url
from fraudflow.cli.runner import CommandError, run, settings_or_exit
from fraudflow.logging import get_logger

app = typer.Typer(help="Read every shard of the stream and write the events into PostgreSQL, exactly once.")
log = get_logger("fraudflow.consume")

StreamOption = Annotated[str | None, typer.Option(help="Stream name (default: FRAUDFLOW_STREAM).")]
ApplicationOption = Annotated[
    str, typer.Option(help="Consumer application name: workers of one application share the shards.")
]


async def _pool(database: DatabaseTarget, max_size: int) -> asyncpg.Pool:
    from consumers.processor.sink import create_staging

    try:
        return await asyncpg.create_pool(
            **database.connect_kwargs(), min_size=1, max_size=max_size, init=create_staging, timeout=10
        )
    except asyncpg.UndefinedTableError:
        raise CommandError("the database has no fraudflow schema: run `fraudflow db migrate` first") from None
    except (OSError, asyncpg.PostgresError) as error:
        raise CommandError(f"cannot connect to PostgreSQL: {error}") from None


@app.callback(invoke_without_command=True)
def consume(
    ctx: typer.Context,
    worker_id: Annotated[str | None, typer.Option(help="This worker's id (default: host-pid).")] = None,
    stream: StreamOption = None,
    application: ApplicationOption = "fraudflow-consumer",
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for the metrics port (0.0.0.0 in a container, for the scraper).")
    ] = "127.0.0.1",
    failover: Annotated[float, typer.Option(min=1.0, help="Seconds without renewal before a lease is free.")] = 10.0,
    initial_position: Annotated[
        str, typer.Option(help="TRIM_HORIZON or LATEST for shards without a checkpoint.")
    ] = "TRIM_HORIZON",
) -> None:
    """Run a consumer worker until Ctrl-C/SIGTERM (then flush, checkpoint and release its leases)."""
    if ctx.invoked_subcommand is not None:
        return
    from consumers.config import ConsumerConfig, InitialPosition
    from consumers.coordinator.scheduler import Scheduler
    from consumers.metrics import ConsumerMetrics

    settings = settings_or_exit()
    try:
        position = InitialPosition(initial_position.upper())
    except ValueError:
        raise typer.BadParameter("must be TRIM_HORIZON or LATEST", param_hint="--initial-position") from None
    config = ConsumerConfig(application=application, failover_s=failover, initial_position=position)
    worker = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    name = stream or settings.stream_name

    async def main() -> None:
        pool = await _pool(await resolve_database(settings), settings.db_pool_max)
        metrics = ConsumerMetrics()
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            async with kinesis_client(settings, client_config(read_timeout=10)) as client:
                log.info("consumer starting", worker=worker, stream=name, application=application)
                await Scheduler(client, pool, name, worker, config, metrics).run(stop)
        finally:
            await pool.close()

    run(main)


@app.command("status")
def status(stream: StreamOption = None, application: ApplicationOption = "fraudflow-consumer") -> None:
    """Print the lease table: owner, checkpoint, lag and checkpoint age per shard."""
    settings = settings_or_exit()
    name = stream or settings.stream_name

    async def main() -> None:
        conn = await asyncpg.connect(await resolve_database_url(settings), timeout=10)
        try:
            rows = await conn.fetch(
                """SELECT shard_id, owner, checkpoint, millis_behind_latest, epoch,
                          extract(epoch FROM now() - checkpointed_at) AS checkpoint_age_s,
                          extract(epoch FROM now() - updated_at) AS renewed_s_ago
                     FROM kinesis_leases WHERE application = $1 AND stream = $2 ORDER BY shard_id""",
                application,
                name,
            )
        finally:
            await conn.close()
        if not rows:
            typer.echo(f"no leases for application {application!r} on stream {name!r}")
            return
        typer.echo(f"{'shard':<24}{'owner':<28}{'lag ms':>8}{'ckpt age s':>12}{'renewed s ago':>15}  checkpoint")
        for r in rows:
            age = f"{r['checkpoint_age_s']:.0f}" if r["checkpoint_age_s"] is not None else "-"
            lag = str(r["millis_behind_latest"]) if r["millis_behind_latest"] is not None else "-"
            checkpoint = r["checkpoint"] if len(r["checkpoint"]) < 30 else "..." + r["checkpoint"][-12:]
            typer.echo(
                f"{r['shard_id']:<24}{(r['owner'] or '-'):<28}{lag:>8}{age:>12}"
                f"{r['renewed_s_ago']:>15.0f}  {checkpoint}"
            )

    run(main)
