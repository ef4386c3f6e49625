"""Behaviour features through the API: computed from a real redis-server at request time, logged with the
event and stored with the row; a store that is down or stalled never costs an error, and is recovered from."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from pydantic import SecretStr

from fraudflow.config import Settings
from fraudflow.events import SCHEMA_VERSION, ScoredEvent
from fraudflow.local.redis import EmbeddedRedis
from tests.consumer_helpers import wait_until, worker
from tests.streams import read_stream
from tests.test_api import body, running


def _payment(i: int, user: str = "u_burst", **metadata: Any) -> dict[str, Any]:
    return body(
        user_id=user,
        transaction_id=f"tx-{i}",
        timestamp=f"2026-12-02T10:00:{i:02d}Z",
        device_info={"device_id": "phone-1", "device_type": "mobile"},
        **metadata,
    )


async def test_a_burst_is_counted_and_the_vector_is_logged_and_stored(
    settings: Settings, redis_url: str, db: asyncpg.Connection
) -> None:
    with_store = settings.model_copy(update={"redis_url": SecretStr(redis_url)})
    async with running(with_store) as (_, http):
        answers = [(await http.post("/predict", json=_payment(i))).json() for i in range(5)]
        retry = (await http.post("/predict", json=_payment(4))).json()  # the same event again
    assert [a["features_degraded"] for a in answers] == [False] * 5
    assert retry["event_id"] == answers[4]["event_id"]
    events = [ScoredEvent.model_validate_json(r["Data"]) for r in await read_stream(settings)]
    counts = [e.behaviour["user_count_1h"] for e in events if e.behaviour]
    assert counts == [1, 2, 3, 4, 5, 5]  # the retry counted once
    assert events[0].schema_version == SCHEMA_VERSION
    assert events[1].behaviour is not None
    assert events[1].behaviour["user_seconds_since_previous"] == 1.0
    assert events[1].behaviour["hour_of_day"] == 10.0
    assert events[0].behaviour is not None
    assert events[0].behaviour["user_seconds_since_previous"] is None  # no previous payment: missing, not 0

    async with worker(settings, "w1"):

        async def all_stored() -> bool:
            return int(await db.fetchval("SELECT count(*) FROM fraud_predictions")) == 5

        await wait_until(all_stored, what="5 rows")
    row = await db.fetchrow(
        "SELECT device_id, behaviour, features_degraded FROM fraud_predictions WHERE event_id = $1",
        uuid.UUID(answers[4]["event_id"]),
    )
    assert row is not None
    assert (row["device_id"], row["features_degraded"]) == ("phone-1", False)
    assert orjson.loads(row["behaviour"])["user_count_1h"] == 5


async def _metric(http: Any, reason: str) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'fraudflow_features_degraded_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_stalled_or_stopped_store_degrades_and_recovers(settings: Settings, tmp_path: Path) -> None:
    store = EmbeddedRedis(tmp_path / "redis")
    store.start()
    try:
        config = settings.model_copy(update={"redis_url": SecretStr(store.url), "features_budget_ms": 50.0})
        async with running(config) as (_, http):
            assert (await http.post("/predict", json=_payment(0))).json()["features_degraded"] is False

            store.pause()  # holds the connection, answers nothing
            started = time.perf_counter()
            stalled = await http.post("/predict", json=_payment(1))
            assert stalled.status_code == 200
            assert stalled.json()["features_degraded"] is True
            assert time.perf_counter() - started < 1.0  # the budget, not the publish timeout
            assert await _metric(http, "timeout") == 1

            store.resume()

            async def recovered() -> bool:
                answer = await http.post("/predict", json=_payment(2, user=f"u_{uuid.uuid4().hex}"))
                return answer.status_code == 200 and answer.json()["features_degraded"] is False

            await wait_until(recovered, deadline_s=10, what="features again once the store answers")

            store.stop()  # gone: connections refused
            gone = await http.post("/predict", json=_payment(3))
            assert (gone.status_code, gone.json()["features_degraded"]) == (200, True)
            assert await _metric(http, "unavailable") >= 1
    finally:
        store.stop()


async def test_without_a_store_every_answer_says_it_was_scored_without_behaviour(settings: Settings) -> None:
    async with running(settings) as (_, http):
        answer = (await http.post("/predict", json=_payment(0))).json()
        assert answer["features_degraded"] is True
        assert await _metric(http, "no_store") == 1


@pytest.mark.parametrize("bad", [{"device_id": "x" * 65}, {"device_id": "a\x00b"}])
async def test_a_bad_device_id_is_a_clear_422(settings: Settings, bad: dict[str, str]) -> None:
    async with running(settings) as (_, http):
        answer = await http.post("/predict", json=body(device_info=bad))
    assert answer.status_code == 422
    assert "device_id" in answer.text
