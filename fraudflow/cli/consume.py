"""`fraudflow consume`: the Kinesis consumer daemon, and `fraudflow consume status`: the lease table."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import asyncpg
import typer

from fraudflow.cli.runner import run, settings_or_exit
from fraudflow.cli.signals import held_stop_signal, release_stop_signals
from fraudflow.db.target import resolve_database

app = typer.Typer(help="Read every shard of the stream and write the events into PostgreSQL, exactly once.")

StreamOption = Annotated[str | None, typer.Option(help="Stream name (default: FRAUDFLOW_STREAM).")]
ApplicationOption = Annotated[
    str, typer.Option(help="Consumer application name: workers of one application share the shards.")
]


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
    emf_interval: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Write the metrics as CloudWatch embedded-metric-format lines on stdout every N seconds "
            "(on ECS the log driver ships them: no scraper needed).",
        ),
    ] = None,
    initial_position: Annotated[
        str, typer.Option(help="TRIM_HORIZON or LATEST for shards without a checkpoint.")
    ] = "TRIM_HORIZON",
    drift_interval: Annotated[
        float,
        typer.Option(min=0.0, help="Measure drift (docs/models.md) every N seconds; 0: off (another worker does)."),
    ] = 3600.0,
) -> None:
    """Run a consumer worker until Ctrl-C/SIGTERM (then flush, checkpoint and release its leases)."""
    if ctx.invoked_subcommand is not None:
        release_stop_signals()
        return
    from consumers.config import ConsumerConfig, InitialPosition
    from consumers.worker import WorkerOptions, run_worker, stop_signals

    settings = settings_or_exit()
    try:
        position = InitialPosition(initial_position.upper())
    except ValueError:
        raise typer.BadParameter("must be TRIM_HORIZON or LATEST", param_hint="--initial-position") from None
    options = WorkerOptions(
        worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
        stream=stream or settings.stream_name,
        config=ConsumerConfig(application=application, failover_s=failover, initial_position=position),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        emf_interval_s=emf_interval,
        drift_interval_s=drift_interval or None,
    )

    async def main() -> None:
        # Signals first: a stop during start-up (held by fraudflow.cli.signals until now) is a clean exit.
        async with stop_signals(already_stopped=held_stop_signal()) as stop:
            await run_worker(settings, await resolve_database(settings), options, stop)

    run(main)


@app.command("status")
def status(stream: StreamOption = None, application: ApplicationOption = "fraudflow-consumer") -> None:
    """Print the lease table: owner, checkpoint, lag and checkpoint age per shard."""
    settings = settings_or_exit()
    name = stream or settings.stream_name

    async def main() -> None:
        from consumers.leases.status import lease_status

        conn = await asyncpg.connect(**(await resolve_database(settings)).connect_kwargs(), timeout=10)
        try:
            rows = await lease_status(conn, application, name)
        finally:
            await conn.close()
        if not rows:
            typer.echo(f"no leases for application {application!r} on stream {name!r}")
            return
        typer.echo(
            f"{'shard':<24}{'owner':<28}{'epoch':>6}{'lag ms':>8}{'ckpt age s':>12}{'renewed s ago':>15}"
            f"{'failures':>10}  checkpoint"
        )
        for r in rows:
            age = f"{r['checkpoint_age_s']:.0f}" if r["checkpoint_age_s"] is not None else "-"
            lag = str(r["millis_behind_latest"]) if r["millis_behind_latest"] is not None else "-"
            checkpoint = r["checkpoint"] if len(r["checkpoint"]) < 30 else "..." + r["checkpoint"][-12:]
            typer.echo(
                f"{r['shard_id']:<24}{(r['owner'] or '-'):<28}{r['epoch']:>6}{lag:>8}{age:>12}"
                f"{r['renewed_s_ago']:>15.0f}{r['failures']:>10}  {checkpoint}"
            )
            if r["last_error"] is not None:
                typer.echo(f"  last failure {r['failed_s_ago']:.0f} s ago: {r['last_error'][:200]}")

    run(main)
