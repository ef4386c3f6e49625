"""Behaviour features: the online store (a real redis-server) and the offline replay compute the same
vectors, retries count once, and state expires with its windows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from fraudflow.behaviour.definitions import (
    HOUR,
    N_STATE,
    NAMES,
    STATE_FEATURES,
    USER_HISTORY_MAX,
    Activity,
    time_features,
)
from fraudflow.behaviour.offline import replay
from fraudflow.behaviour.online import OnlineStore
from fraudflow.behaviour.rebuild import rebuild
from fraudflow.data.columns import AMOUNT_INDEX
from fraudflow.data.history import generate_history

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[OnlineStore]:
    client = Redis.from_url(redis_url)
    yield OnlineStore(client)
    await client.aclose()


def _activity(i: int, user: str, t: float, amount: float, **meta: object) -> Activity:
    return Activity(str(uuid.UUID(int=i)), user, t, amount, **meta)  # type: ignore[arg-type]


def _named(row: np.ndarray) -> dict[str, float]:
    return dict(zip(NAMES[:N_STATE], row.tolist(), strict=True))


async def test_a_card_testing_burst_is_counted_from_one_payment_to_the_next(store: OnlineStore) -> None:
    burst = [_activity(i, "u1", T0 + 20 * i, 1.0, device_id="d1", ip_address="198.51.100.7") for i in range(12)]
    rows = [_named(row) for activity in burst for row in await store.observe([activity])]
    assert [r["user_count_1h"] for r in rows] == list(range(1, 13))
    assert rows[-1]["user_amount_1h"] == 12.0
    assert rows[-1]["user_seconds_since_previous"] == 20.0
    assert rows[0]["user_new_device"] == 1.0
    assert rows[1]["user_new_device"] == 0.0
    assert rows[-1]["ip_count_1h"] == 12.0
    assert rows[-1]["device_users_24h"] == 1.0


async def test_missing_metadata_gives_missing_values(store: OnlineStore) -> None:
    (row,) = await store.observe([_activity(1, "u1", T0, 10.0)])
    named = _named(row)
    assert named["user_count_1h"] == 1.0  # the user is always known
    for name in (
        "user_devices_24h",
        "user_new_device",
        "user_ips_24h",
        "user_km_from_previous",
        "ip_count_1h",
        "device_users_24h",
        "user_seconds_since_previous",
        "user_amount_zscore",
    ):
        assert np.isnan(named[name]), name


async def test_impossible_travel(store: OnlineStore) -> None:
    paris = _activity(1, "u1", T0, 10.0, country="FR", latitude=48.86, longitude=2.35)
    tokyo = _activity(2, "u1", T0 + 1800, 900.0, country="JP", latitude=35.68, longitude=139.69)
    first, second = (_named(r) for r in await store.observe([paris, tokyo]))
    assert np.isnan(first["user_km_from_previous"])
    assert 9_600 < second["user_km_from_previous"] < 9_800
    assert second["user_speed_kmh"] == pytest.approx(second["user_km_from_previous"] * 2)
    assert second["user_new_country"] == 1.0
    assert second["user_countries_7d"] == 2.0
    assert second["user_amount_to_mean"] == 90.0


async def test_a_retry_is_counted_once_and_gets_the_same_vector(store: OnlineStore) -> None:
    first = _activity(1, "u1", T0, 5.0, device_id="d", ip_address="10.0.0.1")
    second = _activity(2, "u1", T0 + 60, 7.0, device_id="d", ip_address="10.0.0.1")
    (a,) = await store.observe([first])
    (b,) = await store.observe([second])
    (a_again,) = await store.observe([first])  # a client's retry, after a later payment
    (b_again,) = await store.observe([second])
    np.testing.assert_array_equal(a_again, a)
    np.testing.assert_array_equal(b_again, b)
    assert _named(b)["user_count_1h"] == 2.0


async def test_every_key_expires_with_its_window(store: OnlineStore) -> None:
    await store.observe([_activity(1, "u1", T0, 5.0, device_id="d", ip_address="10.0.0.1")])
    keys = [key async for key in store.redis.scan_iter("ff:*")]
    assert len(keys) == 4
    ttls = {key.decode().split(":")[1]: await store.redis.pttl(key) for key in keys}
    assert 0 < ttls["ie"] <= HOUR * 1000
    assert 0 < ttls["d"] <= 24 * HOUR * 1000
    assert 0 < ttls["iu"] <= 24 * HOUR * 1000
    assert 0 < ttls["u"] <= 7 * 24 * HOUR * 1000


def test_time_features_are_utc_hour_and_weekday() -> None:
    assert time_features(T0) == (16.0, 0.0)  # a Monday, 16:00 UTC
    assert time_features(T0 + 9 * HOUR) == (1.0, 1.0)


def test_every_feature_is_described() -> None:
    assert len(set(NAMES)) == len(NAMES)
    assert all(len(f.description) > 20 for f in STATE_FEATURES)


_users = st.sampled_from(["u1", "u2", "u3"])


def _optional(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values))


_step = st.tuples(
    _users,
    st.one_of(st.just(0.0), st.floats(0, 3 * 24 * HOUR, allow_nan=False)),  # gaps, ties included
    st.floats(0, 5_000, allow_nan=False).map(lambda a: float(np.float32(a))),
    _optional(["d1", "d2", "d3"]),
    _optional(["10.0.0.1", "10.0.0.2"]),
    st.one_of(st.none(), st.sampled_from([("FR", 48.86, 2.35), ("JP", 35.68, 139.69), ("US", 40.71, -74.0)])),
    st.integers(1, 4),  # how many go to the store in one call
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=40))
async def test_online_and_offline_compute_identical_vectors(redis_url: str, steps: list[tuple[Any, ...]]) -> None:
    activities, batches, t = [], [], T0
    for i, (user, gap, amount, device, ip, place, batch) in enumerate(steps):
        t += gap
        country, lat, lon = place or (None, None, None)
        activities.append(
            _activity(i, user, t, amount, device_id=device, ip_address=ip, country=country, latitude=lat, longitude=lon)
        )
        batches.append(batch)
    client = Redis.from_url(redis_url)
    await client.flushall()
    online, start = [], 0
    try:
        store = OnlineStore(client)
        while start < len(activities):
            size = batches[start]
            online.append(await store.observe(activities[start : start + size]))
            start += size
    finally:
        await client.aclose()
    np.testing.assert_array_equal(np.concatenate(online), replay(activities))


async def _online(redis_url: str, activities: list[Activity], batch: int) -> np.ndarray:
    client = Redis.from_url(redis_url)
    await client.flushall()
    try:
        store = OnlineStore(client)
        return np.concatenate(
            [await store.observe(activities[i : i + batch]) for i in range(0, len(activities), batch)]
        )
    finally:
        await client.aclose()


async def test_a_synthetic_history_gets_the_scripts_vectors_from_the_replay(redis_url: str) -> None:
    """Thousands of transactions with the generator's fraud scenarios (bursts, shared devices, travel): the
    column replay, which the short sequences above barely exercise, against the store's script."""
    data = generate_history(6_000, seed=5)
    assert data.history is not None
    activities = sorted(data.history.activities(data.features[:, AMOUNT_INDEX]), key=lambda a: a.time_s)
    np.testing.assert_array_equal(await _online(redis_url, activities, 500), replay(activities))


async def test_a_history_beyond_its_cap_gets_the_scripts_vectors(redis_url: str) -> None:
    """A user with more transactions in 7 days than a history keeps: the oldest are dropped on both paths."""
    activities = [
        _activity(i, "u1", T0 + 30 * i, float(i % 7), device_id=f"d{i % 3}", latitude=48.0, longitude=2.0)
        for i in range(USER_HISTORY_MAX + 20)
    ]
    online = await _online(redis_url, activities, 500)
    assert _named(online[-1])["user_count_7d"] == USER_HISTORY_MAX
    np.testing.assert_array_equal(online, replay(activities))


async def test_the_store_is_rebuilt_from_the_stored_rows(store: OnlineStore, db: asyncpg.Connection) -> None:
    for i in range(3):
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, event_id, decision, model_version, amount, device_id, ip_address, country)
               VALUES (to_timestamp($1), 'u1', 'web', 0, 0.1, 0.1, $2, 'approve', 'v', 5, 'd1', '10.0.0.1', 'FR')""",
            T0 + 60 * i,
            uuid.UUID(int=i),
        )
    assert await rebuild(db, store) == 3
    assert await rebuild(db, store) == 3  # again: nothing counted twice
    (row,) = await store.observe([_activity(99, "u1", T0 + 600, 5.0, device_id="d1", ip_address="10.0.0.1")])
    named = _named(row)
    assert (named["user_count_1h"], named["user_amount_1h"], named["ip_count_1h"]) == (4.0, 20.0, 4.0)
    assert named["user_new_device"] == 0.0


def test_rebuild_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "features", "rebuild"],
        capture_output=True,
        text=True,
        env={**env, "FRAUDFLOW_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 2
    assert "FRAUDFLOW_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
