"""The API's lookup of behaviour features: how requests share store calls, against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from api.behaviour import BehaviourLookup, Looked
from api.metrics import ApiMetrics
from fraudflow.behaviour.definitions import N_STATE, Activity
from fraudflow.behaviour.online import OnlineStore
from fraudflow.local.redis import EmbeddedRedis


@pytest.fixture
async def paused_store(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _payment(i: int) -> Activity:
    return Activity(str(uuid.UUID(int=i)), f"u{i % 3}", 1_764_000_000.0 + i, 10.0, device_id="d1")


def _calls(metrics: ApiMetrics) -> float | None:
    return metrics.registry.get_sample_value("fraudflow_features_seconds_count")


async def test_requests_share_calls_two_at_most_in_flight(paused_store: EmbeddedRedis) -> None:
    metrics = ApiMetrics()
    got: dict[int, Looked] = {}
    all_in = asyncio.Event()

    def handler(i: int) -> Callable[[Looked], None]:
        def then(looked: Looked) -> None:
            if i == 3:
                raise RuntimeError("this request's own failure")
            got[i] = looked
            if len(got) == 14:
                all_in.set()

        return then

    store = OnlineStore(Redis.from_url(paused_store.url))
    # Two connections open and the script loaded before the pause: a first call's handshake and script load
    # take several round trips, so on resume a later call could overtake it and count out of order.
    warm = [Activity(str(uuid.UUID(int=100 + i)), "warm", 1_764_000_000.0, 1.0) for i in range(2)]
    await asyncio.gather(*(store.observe([activity]) for activity in warm))
    lookup = BehaviourLookup(store, metrics, budget_s=10.0)
    async with lookup:
        paused_store.pause()  # every call stays in flight until resumed
        try:
            for i in range(3):  # one turn of the loop: the three ride in one call
                lookup.submit([_payment(i)], handler(i))
            await asyncio.sleep(0)  # one turn: the first call is sent
            lookup.submit([_payment(3)], handler(3))
            await asyncio.sleep(0)  # the second call is sent: two in flight
            for i in range(4, 12):  # no call free: they wait...
                lookup.submit([_payment(i)], handler(i))
            await asyncio.sleep(0)
            for i in range(12, 15):  # ... with those of later turns, and ride together in the next
                lookup.submit([_payment(i)], handler(i))
        finally:
            paused_store.resume()
        await asyncio.wait_for(all_in.wait(), 10)
    assert _calls(metrics) == 3
    assert sorted(got) == [0, 1, 2, *range(4, 15)]  # the handler that raised did not cost the others
    assert all(not looked.degraded and looked.state.shape == (1, N_STATE) for looked in got.values())
    assert got[14].state[0, 0] == 5  # u2's 1-hour count: payments 2, 5, 8, 11 and 14, in order
