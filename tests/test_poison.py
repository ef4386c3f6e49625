"""Values the table cannot hold: the API refuses them (422 naming the field) and the consumer dead-letters
them and moves on, whichever producer wrote them. One schema of what is valid serves both sides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from consumers.leases.table import LeaseTable, NewShard
from consumers.processor.sink import PostgresSink, ShardBuffer
from consumers.retrieval.fetcher import Record
from fraudflow.config import Settings
from fraudflow.events import encode_event
from fraudflow.kpl import MAGIC, aggregate
from tests.consumer_helpers import event, pool_for, put, stored, wait_until, worker
from tests.streams import read_stream
from tests.test_api import body, running

NUL = "a\x00b"
CALENDAR_EDGES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        target = payload["metadata"]
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return mutate


# Text fields of the request's metadata and of the event alike (the event's are the metadata's, flattened).
SHARED_TEXT_FIELDS = [
    ["user_id"],
    ["source"],
    ["device_info", "device_type"],
    ["device_info", "os_version"],
    ["device_info", "app_version"],
    ["geo", "country"],
    ["geo", "region"],
    ["geo", "city"],
]
API_POISON = [
    *[(["metadata", *path], _set(path, NUL)) for path in [*SHARED_TEXT_FIELDS, ["transaction_id"]]],
    *[(["metadata", "timestamp"], _set(["timestamp"], edge)) for edge in CALENDAR_EDGES],
    (["metadata", "ip_address"], _set(["ip_address"], "fe80::1%" + "x" * 5000)),
]


@pytest.mark.parametrize(
    ("field", "mutate"), API_POISON, ids=[f"{'.'.join(f[1:])}-{i}" for i, (f, _) in enumerate(API_POISON)]
)
async def test_the_api_refuses_what_the_table_cannot_hold(
    settings: Settings, field: list[str], mutate: Callable[[dict[str, Any]], None]
) -> None:
    payload = body()
    mutate(payload)
    async with running(settings) as (_, http):
        response = await http.post("/predict", json=payload)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert ["body", *field] in [item["loc"] for item in response.json()["detail"]]
    assert await read_stream(settings) == []


async def test_a_calendar_edge_in_a_batch_fails_that_item_only(settings: Settings) -> None:
    items = [body(), body(timestamp=CALENDAR_EDGES[0]), body(timestamp=CALENDAR_EDGES[1]), body()]
    async with running(settings) as (_, http):
        response = await http.post("/predict/batch", json={"transactions": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert ["result" in r for r in results] == [True, False, False, True]
    assert [r["error"]["status"] for r in results[1:3]] == [422, 422]


def _poison_events() -> list[tuple[str, bytes]]:
    """(what, record body) for every way a producer other than our API could write a row the table refuses."""
    out: list[tuple[str, bytes]] = []
    for path in [*SHARED_TEXT_FIELDS, ["model_version"], ["ip_address"]]:
        value = event()
        target = value
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = NUL
        out.append((".".join(path), encode_event(value)))
    mutations: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("amount", lambda e: e.update(amount=1e39)),
        ("features.0", lambda e: e["features"].__setitem__(0, 1e39)),
        ("timestamp", lambda e: e.update(timestamp="0001-01-01T00:00:00+05:00")),
        ("received_at", lambda e: e.update(received_at="0001-01-01T00:00:00+05:00")),
        ("ip_address", lambda e: e.update(ip_address="not an address")),
    ]
    for name, mutate in mutations:
        value = event()
        mutate(value)
        out.append((name, encode_event(value)))
    return out


def _kpl_with_invalid_key_table() -> bytes:
    """A KPL record with a valid MD5 whose partition-key table is not UTF-8."""
    good = aggregate([("k", encode_event(event()))])
    body = good[len(MAGIC) : -16].replace(b"\n\x01k", b"\n\x01\xff", 1)
    import hashlib

    return MAGIC + body + hashlib.md5(body).digest()  # noqa: S324 - KPL's format


@pytest.fixture
def shard_count() -> int:
    return 1


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_poison_matrix_is_dead_lettered_and_the_good_rows_stored(
    settings: Settings, db: asyncpg.Connection
) -> None:
    poison = [*_poison_events(), ("kpl partition keys", _kpl_with_invalid_key_table())]
    bodies, good_ids = [], []
    for _, data in poison:
        good = event()
        good_ids.append(good["event_id"])
        bodies += [encode_event(good), data]
    last = event()
    good_ids.append(last["event_id"])
    bodies.append(encode_event(last))
    await put(settings, bodies, ["k"] * len(bodies))
    async with worker(settings, "w1"):
        await wait_until(lambda: _stored_at_least(db, len(good_ids)), what="every good row")
        await wait_until(lambda: _rejected_at_least(db, len(poison)), what="every poison record dead-lettered")
    assert {str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM fraud_predictions")} == set(good_ids)
    reasons = [r["reason"] for r in await db.fetch("SELECT reason FROM rejected_records ORDER BY sequence_number")]
    assert len(reasons) == len(poison)
    for (what, _), reason in zip(poison, reasons, strict=True):
        assert what.split(" ")[0] in reason or "KPL" in reason, (what, reason)
    checkpoint = await db.fetchval("SELECT checkpoint FROM kinesis_leases")
    assert int(checkpoint) == max(int(r["SequenceNumber"]) for r in await read_stream(settings))


async def _stored_at_least(db: asyncpg.Connection, n: int) -> bool:
    return (await stored(db))[0] >= n


async def _rejected_at_least(db: asyncpg.Connection, n: int) -> bool:
    return int(await db.fetchval("SELECT count(*) FROM rejected_records")) >= n


@pytest.fixture
async def held_lease(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[tuple[PostgresSink, Any]]:
    pool = await pool_for(settings)
    table = LeaseTable(pool, "app", settings.stream_name)
    await table.create_missing([NewShard("shard-1", [], "0", "1", "TRIM_HORIZON")])
    (free,) = await table.all()
    lease = await table.take("shard-1", "w1", free.lease_counter)
    yield PostgresSink(pool, table), lease
    await pool.close()


async def test_rows_postgres_refuses_are_isolated_and_dead_lettered(
    held_lease: tuple[PostgresSink, Any], db: asyncpg.Connection
) -> None:
    """A row that passed validation but that PostgreSQL refuses (here bypassing validation) is bisected out of
    its batch; the rest of the batch, the aggregates and the checkpoint go through in one transaction."""
    sink, lease = held_lease
    buffer = ShardBuffer("shard-1")
    records = [Record(str(n), 0, "k\x00ey", encode_event(event(uuid.uuid4())), None) for n in range(1, 8)]
    buffer.add(records)
    rows = list(buffer.rows[3])
    rows[1] = "user\x00"  # user_id with a NUL, as if validation had missed it
    buffer.rows[3] = tuple(rows)
    amount = list(buffer.rows[5])
    amount[18] = 1e39  # amount beyond PostgreSQL's real
    buffer.rows[5] = tuple(amount)
    result = await sink.flush(lease, buffer, "7")
    assert (result.inserted, result.rejected) == (5, 2)
    assert await stored(db) == (5, 5)
    rejected = await db.fetch("SELECT sequence_number, partition_key, reason FROM rejected_records ORDER BY 1")
    assert [int(r["sequence_number"]) for r in rejected] == [4, 6]
    assert all(r["reason"].startswith("refused by PostgreSQL") for r in rejected)
    assert "\x00" not in rejected[0]["partition_key"]
    assert await db.fetchval("SELECT checkpoint FROM kinesis_leases") == "7"
    assert await db.fetchval("SELECT sum(transactions) FROM fraud_stats_15m") == 5
