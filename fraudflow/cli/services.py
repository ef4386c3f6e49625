"""`fraudflow services`: the embedded PostgreSQL and Kinesis endpoint in the foreground."""

from __future__ import annotations

from pathlib import Path

import typer

from fraudflow.cli.runner import run, settings_or_exit, wait_for_stop_signal
from fraudflow.local.services import EmbeddedServices, KinesisBackend


def services(
    pg_port: int = typer.Option(55432, help="PostgreSQL port on 127.0.0.1 (0 picks a free one)."),
    kinesis_port: int = typer.Option(4567, help="Kinesis endpoint port on 127.0.0.1 (0 picks a free one)."),
    kinesis: KinesisBackend = typer.Option(KinesisBackend.MOTO, help="Kinesis emulator to run."),
    data_dir: Path | None = typer.Option(None, help="Where PostgreSQL keeps its data [default: FRAUDFLOW_DATA_DIR]."),
) -> None:
    """Start the embedded PostgreSQL and Kinesis endpoint; print their settings; stop both on Ctrl-C/SIGTERM."""
    settings = settings_or_exit()

    async def main() -> None:
        stack = EmbeddedServices(
            data_dir or settings.data_dir, pg_port=pg_port, kinesis_port=kinesis_port, backend=kinesis
        )
        await stack.start(settings)
        try:
            typer.echo(f"PostgreSQL   {stack.database_url}  (data in {stack.postgres.data_dir})")
            typer.echo(f"Kinesis      {stack.kinesis.endpoint_url}  ({stack.kinesis.name}, stream "
                       f"{settings.stream_name}, {settings.shards} shards)")
            typer.echo("\n# export these in another shell (or put them in .env):")
            for key, value in stack.env(settings).items():
                typer.echo(f"export {key}={value}")
            typer.echo("\nPress Ctrl-C to stop.", err=True)
            await wait_for_stop_signal()
        finally:
            await stack.stop()
        typer.echo("stopped", err=True)

    run(main)
