"""Kinesis clients: the one-pass GetRecords parser gives exactly what botocore's generic parser gives."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from fraudflow.aws import _parse_get_records, kinesis_client
from fraudflow.config import Settings
from fraudflow.streams import wait_until_active


def _without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
@pytest.mark.parametrize("shard_count", [1])
async def test_get_records_parses_like_botocore(settings: Settings) -> None:
    stream = settings.stream_name
    async with kinesis_client(settings) as fast, kinesis_client(settings) as generic:
        generic.meta.events.unregister("before-parse.kinesis.GetRecords", _parse_get_records)
        await fast.put_records(
            StreamName=stream,
            Records=[{"Data": bytes(range(256)), "PartitionKey": "a"}, {"Data": b"{}", "PartitionKey": "b"}],
        )
        # Closing the shard makes its last page carry ChildShards (on kinesis-local) and no records.
        (shard,) = (await fast.list_shards(StreamName=stream))["Shards"]
        await fast.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str(2**127))
        await wait_until_active(fast, stream)
        iterator: str | None = (
            await fast.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        )["ShardIterator"]
        pages: list[Any] = []
        while iterator and len(pages) < 4:  # moto never ends a closed shard: a few pages show its behaviour
            page = await fast.get_records(ShardIterator=iterator)
            assert _without_metadata(dict(page)) == _without_metadata(
                dict(await generic.get_records(ShardIterator=iterator))
            )
            pages.append(page)
            iterator = page.get("NextShardIterator")
        with pytest.raises(ClientError):  # errors are still botocore's to parse
            await fast.get_records(ShardIterator="not-an-iterator")
    assert [r["Data"] for r in pages[0]["Records"]] == [bytes(range(256)), b"{}"]
    assert pages[0]["Records"][0]["ApproximateArrivalTimestamp"].tzinfo is not None


def test_a_garbled_answer_is_left_to_botocore() -> None:
    response = {"status_code": 200, "body": b'{"Records": [', "headers": {}}
    customized: dict[str, Any] = {}
    _parse_get_records(response_dict=response, customized_response_dict=customized)
    assert customized == {}
    assert response["body"] == b'{"Records": ['
