"""The Kinesis producer against a real emulator, with faults injected by a proxy in front of it."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from fraudflow.aws import client_config, kinesis_client
from fraudflow.config import Settings
from fraudflow.producer import BufferFull, KinesisProducer, ProducerHooks, PublishError
from tests.faultproxy import FaultProxy
from tests.streams import read_stream


def _records(n: int, users: int) -> list[tuple[bytes, str]]:
    return [(f"{i}".encode(), f"user-{i % users}") for i in range(n)]


async def _publish_all(settings: Settings, records: list[tuple[bytes, str]], **kwargs: object) -> list[object]:
    async with kinesis_client(settings, client_config(read_timeout=2)) as client:
        producer = KinesisProducer(client, settings.stream_name, backoff_base_s=0.01, backoff_cap_s=0.1, **kwargs)  # type: ignore[arg-type]
        await producer.start()
        futures = [producer.publish(data, key) for data, key in records]
        results = await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert await producer.close(5) == 0
    return list(results)


def _order_by_key(stream: list[dict[str, object]]) -> dict[str, list[int]]:
    by_key: dict[str, list[tuple[tuple[int, int], int]]] = defaultdict(list)
    for record in stream:
        position = (int(str(record["SequenceNumber"])), int(record["SubSequence"]))  # type: ignore[call-overload]
        by_key[str(record["PartitionKey"])].append((position, int(record["Data"])))  # type: ignore[call-overload]
    return {key: [value for _, value in sorted(items)] for key, items in by_key.items()}


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_every_record_lands_once_in_key_order(settings: Settings) -> None:
    records = _records(1_200, users=37)
    results = await _publish_all(settings, records)
    assert len(results) == 1_200
    stream = await read_stream(settings)
    assert sorted(int(r["Data"]) for r in stream) == list(range(1_200))
    for key, values in _order_by_key(stream).items():
        assert values == sorted(values), f"{key} out of order"


async def test_partial_failures_retry_only_failed_records_in_order(
    proxied_settings: Settings, fault_proxy: FaultProxy
) -> None:
    fault_proxy.fail_records(150)
    failures: list[tuple[str, int]] = []
    hooks = ProducerHooks(on_failure=lambda reason, n: failures.append((reason, n)))
    await _publish_all(proxied_settings, _records(600, users=5), hooks=hooks)
    assert fault_proxy.injected == 150
    # Each failed Kinesis record may be an aggregate: the hook counts the user records it carried.
    assert sum(n for reason, n in failures if reason == "ProvisionedThroughputExceededException") >= 150
    stream = await read_stream(proxied_settings)
    assert sorted(int(r["Data"]) for r in stream) == list(range(600))  # nothing lost, nothing doubled
    for key, values in _order_by_key(stream).items():
        assert values == sorted(values), f"{key} out of order after retries"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "ProvisionedThroughputExceededException"), (500, "InternalFailure"), (503, "ServiceUnavailable")],
)
async def test_throttling_and_5xx_back_off_and_deliver(
    proxied_settings: Settings, fault_proxy: FaultProxy, status: int, code: str
) -> None:
    fault_proxy.error("PutRecords", status, code, times=3)
    await _publish_all(proxied_settings, _records(50, users=10))
    assert fault_proxy.calls["PutRecords"] >= 4
    assert len(await read_stream(proxied_settings)) == 50


async def test_permanent_rejection_fails_the_records(proxied_settings: Settings, fault_proxy: FaultProxy) -> None:
    fault_proxy.error("PutRecords", 400, "ValidationException", times=1)
    async with kinesis_client(proxied_settings) as client:
        producer = KinesisProducer(client, proxied_settings.stream_name)
        await producer.start()
        future = producer.publish(b"x", "k")
        with pytest.raises(PublishError, match="ValidationException"):
            await asyncio.wait_for(future, 10)
        await producer.close(1)


async def test_full_buffer_refuses_instead_of_dropping(proxied_settings: Settings, fault_proxy: FaultProxy) -> None:
    fault_proxy.down = True
    async with kinesis_client(proxied_settings) as client:
        producer = KinesisProducer(client, proxied_settings.stream_name, max_buffer=10, backoff_cap_s=0.05)
        await producer.start()
        accepted = [producer.publish(b"%d" % i, f"k{i}") for i in range(10)]
        with pytest.raises(BufferFull):
            producer.publish(b"overflow", "k")
        fault_proxy.down = False  # Kinesis is back: everything accepted is delivered
        await asyncio.wait_for(asyncio.gather(*accepted), 10)
        assert await producer.close(5) == 0
    assert len(await read_stream(proxied_settings)) == 10


async def test_close_flushes_and_then_refuses(settings: Settings) -> None:
    async with kinesis_client(settings) as client:
        producer = KinesisProducer(client, settings.stream_name, linger_s=0.05)
        await producer.start()
        for i in range(300):
            producer.publish(b"%d" % i, f"k{i % 7}")
        assert await producer.close(10) == 0
        with pytest.raises(BufferFull):
            producer.publish(b"late", "k")
    assert len(await read_stream(settings)) == 300
