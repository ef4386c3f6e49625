"""`fraudflow services`: the embedded PostgreSQL, Kinesis endpoint and Redis in the foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from fraudflow.cli.runner import run, settings_or_exit, wait_for_stop_signal
from fraudflow.local.services import EmbeddedServices, KinesisBackend


def services(
    pg_port: Annotated[int, typer.Option(help="PostgreSQL port on 127.0.0.1 (0 picks a free one).")] = 55432,
    kinesis_port: Annotated[int, typer.Option(help="Kinesis port on 127.0.0.1 (0 picks a free one).")] = 4567,
    redis_port: Annotated[int, typer.Option(help="Redis (feature store) port on 127.0.0.1 (0 picks one).")] = 56379,
    kinesis: Annotated[KinesisBackend, typer.Option(help="Kinesis emulator to run.")] = KinesisBackend.MOTO,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where PostgreSQL keeps its data (default: FRAUDFLOW_DATA_DIR).")
    ] = None,
) -> None:
    """Start the embedded PostgreSQL, Kinesis endpoint and Redis; print their settings; stop them on
    Ctrl-C/SIGTERM."""
    settings = settings_or_exit()

    async def main() -> None:
        stack = EmbeddedServices(
            data_dir or settings.data_dir,
            pg_port=pg_port,
            kinesis_port=kinesis_port,
            redis_port=redis_port,
            backend=kinesis,
        )
        await stack.start(settings)
        stop = asyncio.ensure_future(wait_for_stop_signal())
        await asyncio.sleep(0)  # its handlers are installed before anyone is told to send a signal
        try:
            typer.echo(f"PostgreSQL   {stack.database_url}  (data in {stack.postgres.data_dir})")
            typer.echo(
                f"Kinesis      {stack.kinesis.endpoint_url}  ({stack.kinesis.name}, stream "
                f"{settings.stream_name}, {settings.shards} shards)"
            )
            typer.echo(f"Redis        {stack.redis.url}  (online feature store, in memory)")
            typer.echo("\n# export these in another shell (or put them in .env):")
            for key, value in stack.env(settings).items():
                typer.echo(f"export {key}={value}")
            typer.echo("\nPress Ctrl-C to stop.", err=True)
            await stop
        finally:
            stop.cancel()
            await stack.stop()
        typer.echo("stopped", err=True)

    run(main)
