"""Test helpers for reading a whole stream back."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.heartbeats import KEY_PREFIX
from fraudflow.kpl import AggregationError, UserRecord, deaggregate

if TYPE_CHECKING:
    from types_aiobotocore_kinesis.type_defs import RecordTypeDef


async def read_stream(settings: Settings) -> list[dict[str, Any]]:
    """Every event currently in the stream (KPL aggregates split, as the consumer does; the API's heartbeats
    left out), each with its ShardId and SubSequence, in shard order."""
    records: list[dict[str, Any]] = []
    async with kinesis_client(settings) as client:
        shards = (await client.list_shards(StreamName=settings.stream_name))["Shards"]
        for shard in shards:
            iterator: str | None = (
                await client.get_shard_iterator(
                    StreamName=settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                page = await client.get_records(ShardIterator=iterator, Limit=10_000)
                records += [
                    {**r, "Data": user.data, "SubSequence": user.sub_sequence, "ShardId": shard["ShardId"]}
                    for r in page["Records"]
                    for user in _users(r)
                    if not user.partition_key.startswith(KEY_PREFIX)
                ]
                if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
    return records


def _users(record: RecordTypeDef) -> list[UserRecord]:
    try:
        return deaggregate(record["Data"], record["PartitionKey"])
    except AggregationError:  # a poison record, as written: the consumer dead-letters it whole
        return [UserRecord(record["Data"], record["PartitionKey"], 0)]


async def wait_for_records(settings: Settings, count: int, deadline_s: float = 20.0) -> list[dict[str, Any]]:
    end = time.monotonic() + deadline_s
    while True:
        records = await read_stream(settings)
        if len(records) >= count or time.monotonic() > end:
            return records
        await asyncio.sleep(0.1)
