"""`fraudflow stream`: create the Kinesis stream where nothing else does (emulators, docker compose)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError

from fraudflow.aws import kinesis_client
from fraudflow.cli.runner import CommandError, run, settings_or_exit
from fraudflow.retry import Backoff
from fraudflow.streams import ensure_stream

app = typer.Typer(help="The Kinesis stream (on AWS, Terraform owns it; see docs/deploy-aws.md).", no_args_is_help=True)


@app.command("create")
def create(
    shards: Annotated[int | None, typer.Option(min=1, help="Shard count (default: FRAUDFLOW_SHARDS).")] = None,
    wait: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for the endpoint to answer and the stream to be ACTIVE.")
    ] = 60.0,
) -> None:
    """Create FRAUDFLOW_STREAM if it does not exist (idempotent) and wait until it is ACTIVE."""
    settings = settings_or_exit()
    count = shards or settings.shards

    async def main() -> None:
        end = time.monotonic() + wait
        backoff = Backoff(0.2, 2.0)
        async with kinesis_client(settings) as client:
            while True:
                try:
                    await ensure_stream(client, settings.stream_name, count, deadline_s=max(end - time.monotonic(), 1))
                    break
                except (ClientError, BotoCoreError) as error:
                    # An emulator started alongside (docker compose) may not listen yet: retry until the deadline.
                    delay = backoff.next_delay()
                    if isinstance(error, ClientError) or time.monotonic() + delay > end:
                        raise CommandError(f"cannot create stream {settings.stream_name}: {error}") from None
                    await asyncio.sleep(delay)
        typer.echo(f"stream {settings.stream_name} is ACTIVE")

    run(main)
