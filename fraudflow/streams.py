"""Stream administration: create a stream if needed and wait until it is ACTIVE."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from fraudflow.aws import error_code

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient


async def stream_status(client: KinesisClient, stream: str) -> str | None:
    try:
        summary = await client.describe_stream_summary(StreamName=stream)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    return summary["StreamDescriptionSummary"]["StreamStatus"]


async def stream_identity(client: KinesisClient, stream: str) -> str:
    """What tells this stream from an earlier one of the same name: its ARN and creation time."""
    summary = (await client.describe_stream_summary(StreamName=stream))["StreamDescriptionSummary"]
    return f"{summary['StreamARN']}@{summary['StreamCreationTimestamp'].isoformat()}"


async def wait_until_active(client: KinesisClient, stream: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while (status := await stream_status(client, stream)) != "ACTIVE":
        if time.monotonic() > end:
            raise TimeoutError(f"stream {stream} is {status or 'missing'} after {deadline_s:.0f}s")
        await asyncio.sleep(0.1)


async def ensure_stream(client: KinesisClient, stream: str, shards: int, deadline_s: float = 30.0) -> None:
    if await stream_status(client, stream) is None:
        try:
            await client.create_stream(StreamName=stream, ShardCount=shards)
        except ClientError as error:
            if error_code(error) != "ResourceInUseException":  # another process created it first
                raise
    await wait_until_active(client, stream, deadline_s)
