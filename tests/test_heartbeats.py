"""The API's heartbeats: counted per minute of receipt, stored by the consumer whatever their order, and
turned by the dashboard into published-against-stored and the 503 rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from consumers.processor.rows import Rejection, to_row
from consumers.processor.sink import _record_heartbeats
from consumers.retrieval.fetcher import Record
from dash_app import queries
from dash_app.callbacks import health
from fraudflow.events import encode_event, sample_event
from fraudflow.heartbeats import MINUTES_KEPT, ApiHeartbeat, Tally, minute_of

T0 = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)


def _record(data: bytes) -> Record:
    return Record("1", 0, "k", data, None)


def test_a_tally_counts_by_minute_and_repeats_the_last_ten() -> None:
    tally = Tally("host:1", T0)
    first = minute_of(T0)
    tally.answered(first, 5, 1)
    for _ in range(4):
        tally.published(first)
    tally.answered(first + 1, 2, 0)
    beat = ApiHeartbeat.model_validate_json(tally.heartbeat(T0 + timedelta(minutes=1)))
    assert [(m.minute, m.answered, m.published, m.unavailable) for m in beat.minutes] == [
        (T0.replace(second=0), 5, 4, 1),
        (T0.replace(second=0) + timedelta(minutes=1), 2, 0, 0),
    ]
    # An idle process still reports its current minute (it is alive); minutes older than ten are dropped.
    later = T0 + timedelta(minutes=MINUTES_KEPT + 3)
    beat = ApiHeartbeat.model_validate_json(tally.heartbeat(later))
    assert [(m.minute, m.answered) for m in beat.minutes] == [(later.replace(second=0), 0)]


def test_the_consumer_tells_heartbeats_from_events_and_bad_records() -> None:
    assert isinstance(to_row(_record(Tally("h:1", T0).heartbeat(T0)), "s"), ApiHeartbeat)
    assert isinstance(to_row(_record(encode_event(sample_event())), "s"), tuple)
    bad = to_row(_record(orjson.dumps({"kind": "api_heartbeat", "schema_version": 1})), "s")
    assert isinstance(bad, Rejection)  # neither an event nor a heartbeat: dead-lettered, with the event's reason
    assert "event_id" in bad.reason


async def test_stored_counts_keep_the_largest_whatever_the_order(db: asyncpg.Connection) -> None:
    tally = Tally(f"h:{uuid.uuid4().hex[:6]}", T0)
    tally.answered(minute_of(T0), 3, 0)
    older = ApiHeartbeat.model_validate_json(tally.heartbeat(T0))
    tally.answered(minute_of(T0), 2, 1)
    newer = ApiHeartbeat.model_validate_json(tally.heartbeat(T0 + timedelta(seconds=5)))
    await _record_heartbeats(db, [newer])
    await _record_heartbeats(db, [older, older])  # a replay after the newer one: nothing goes back
    row = await db.fetchrow("SELECT answered, unavailable FROM api_heartbeats WHERE process = $1", tally.process)
    assert row is not None
    assert (row["answered"], row["unavailable"]) == (5, 1)


async def _insert_rows(db: asyncpg.Connection, received: datetime, n: int) -> None:
    for _ in range(n):
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, event_id, decision, model_version, received_at)
               VALUES ($1, 'u', 'web', 0, 0.1, 0.1, $2, 'approve', 'v', $1)""",
            received,
            uuid.uuid4(),
        )


async def test_the_dashboard_compares_published_with_stored(db: asyncpg.Connection) -> None:
    now = await db.fetchval("SELECT now()")
    three_minutes_ago = now - timedelta(minutes=3)
    tally = Tally("api-1:7", now)
    tally.answered(minute_of(three_minutes_ago), 100, 3)
    for _ in range(97):
        tally.published(minute_of(three_minutes_ago))
    beat = ApiHeartbeat.model_validate_json(tally.heartbeat(now))
    await _record_heartbeats(db, [beat])
    await _insert_rows(db, three_minutes_ago, 95)  # two published records never stored

    flow = await queries.api_flow(db)
    assert (flow["processes"], flow["answered"], flow["published"], flow["unavailable"], flow["stored"]) == (
        1,
        100,
        97,
        3,
        95,
    )
    text, level = health([{"owner": "w", "renewed_s_ago": 1, "millis_behind_latest": 0}], 1.0, flow)
    assert level == "warning"
    assert "97 published, 95 stored, 3.0% answered 503: 2 published but not stored" in text

    await _insert_rows(db, three_minutes_ago, 2)
    text, level = health(
        [{"owner": "w", "renewed_s_ago": 1, "millis_behind_latest": 0}], 1.0, await queries.api_flow(db)
    )
    assert (level, "97 stored" in text) == ("warning", True)  # every record stored, but 3% answered 503


def test_a_silent_api_is_a_warning() -> None:
    leases = [{"owner": "w", "renewed_s_ago": 1, "millis_behind_latest": 0}]
    flow = {"processes": 0, "silent_s": 45.0, "answered": 0, "published": 0, "unavailable": 0, "stored": 0}
    assert health(leases, 1.0, flow) == (
        "OK: newest row 1 s ago; consumer lag 0.0 s; API: no heartbeat for 45 s",
        "warning",
    )
    assert health(leases, 1.0, {**flow, "silent_s": None})[0].endswith("API: no heartbeat in the last hour")
    healthy = {**flow, "processes": 2, "silent_s": 2.0, "answered": 10, "published": 10, "stored": 10}
    assert health(leases, 1.0, healthy)[1] == "ok"
