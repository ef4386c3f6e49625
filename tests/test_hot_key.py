"""One hot partition key (user_id): aggregated to its shard's pace, bounded in the buffer, visible in /readyz."""

from __future__ import annotations

import asyncio

import pytest

from fraudflow.aws import client_config, kinesis_client
from fraudflow.config import DeliveryMode, Settings
from fraudflow.producer import BufferFull, KeyBacklogFull, KinesisProducer
from tests.faultproxy import FaultProxy
from tests.streams import read_stream
from tests.test_api import body, running


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_a_hot_key_moves_many_records_per_round_trip_in_order(
    proxied_settings: Settings, fault_proxy: FaultProxy
) -> None:
    fault_proxy.delay("PutRecords", 0.05, times=10_000)  # a slow round trip: one record each would take 100 s
    async with (
        kinesis_client(proxied_settings, client_config(read_timeout=5)) as client,
        KinesisProducer(client, proxied_settings.stream_name) as producer,
    ):
        futures = [producer.publish(b"%d" % i, "hot-user") for i in range(2_000)]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert fault_proxy.calls["PutRecords"] <= 20
    stream = await read_stream(proxied_settings)
    assert {r["PartitionKey"] for r in stream} == {"hot-user"}
    in_order = sorted(stream, key=lambda r: (int(r["SequenceNumber"]), r["SubSequence"]))
    assert [int(r["Data"]) for r in in_order] == list(range(2_000))


async def test_a_keys_share_of_the_buffer_is_bounded(proxied_settings: Settings, fault_proxy: FaultProxy) -> None:
    fault_proxy.down = True
    async with kinesis_client(proxied_settings) as client:
        producer = KinesisProducer(client, proxied_settings.stream_name, max_buffer=100, max_key_buffer=10)
        async with producer:
            accepted = [producer.publish(b"%d" % i, "hot") for i in range(10)]
            with pytest.raises(KeyBacklogFull):
                producer.publish(b"more", "hot")
            accepted += [producer.publish(b"%d" % i, f"user-{i}") for i in range(90)]
            with pytest.raises(BufferFull):
                producer.publish(b"overflow", "user-x")
            fault_proxy.down = False
            await asyncio.wait_for(asyncio.gather(*accepted), 10)
    assert len(await read_stream(proxied_settings)) == 100


async def test_a_hot_user_cannot_deny_publishing_to_others(proxied_settings: Settings, fault_proxy: FaultProxy) -> None:
    settings = proxied_settings.model_copy(
        update={"delivery_mode": DeliveryMode.ASYNC, "publish_key_buffer_records": 50}
    )
    fault_proxy.down = True  # nothing drains: the hot user's backlog only grows
    async with running(settings) as (_, http):
        hot = await http.post("/predict/batch", json={"transactions": [body(user_id="hot")] * 200})
        errors = [item["error"] for item in hot.json()["results"] if "error" in item]
        assert len(errors) == 150
        assert all(e["status"] == 503 and "user_backlog_full" in e["detail"] for e in errors)
        others = [(await http.post("/predict", json=body(user_id=f"u{i}"))).status_code for i in range(20)]
        assert others == [200] * 20
        metrics = (await http.get("/metrics")).text
        assert 'fraudflow_api_unavailable_total{reason="user_backlog_full"} 150.0' in metrics
        fault_proxy.down = False


async def test_readiness_reports_a_backlog_that_does_not_drain(
    proxied_settings: Settings, fault_proxy: FaultProxy
) -> None:
    settings = proxied_settings.model_copy(update={"delivery_mode": DeliveryMode.ASYNC, "publish_timeout_s": 0.1})
    fault_proxy.error("PutRecords", 500, "InternalFailure", times=1_000_000)  # the stream itself looks fine
    async with running(settings) as (_, http):
        assert (await http.post("/predict", json=body())).status_code == 200
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (ready := await http.get("/readyz")).status_code == 200:
            assert loop.time() < deadline, "the stuck backlog never showed in /readyz"
            await asyncio.sleep(0.05)
        assert ready.status_code == 503
        assert any("not draining" in problem for problem in ready.json()["problems"])
        assert ready.json()["oldest_buffered_s"] > 0.5
        fault_proxy.errors.clear()
        deadline = loop.time() + 10
        while (ready := await http.get("/readyz")).status_code == 503:
            assert loop.time() < deadline, "readiness did not come back once the backlog drained"
            await asyncio.sleep(0.05)
        assert ready.json()["buffered_records"] == 0
