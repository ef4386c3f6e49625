"""The review queue: the consumer opens one case per user for its review decisions, exactly once; analysts
claim cases without ever getting the same one, claims expire, and closing a case labels its transactions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from fraudflow import cases
from fraudflow.config import Settings
from fraudflow.events import encode_event
from tests.consumer_helpers import event, put, wait_until, worker


def _reviewed(user: str, decision: str = "review", amount: float = 100.0) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    body = event(uuid.UUID(event_id), user) | {"decision": decision, "amount": amount, "fraud_proba": 0.2}
    return event_id, encode_event(body)


async def test_each_review_decision_joins_its_users_open_case_once_whatever_is_read_twice(
    settings: Settings, db: asyncpg.Connection
) -> None:
    records = [
        _reviewed("ann"),
        _reviewed("ann"),
        _reviewed("bob"),
        _reviewed("ann", "approve"),
        _reviewed("cid", "decline"),
    ]
    bodies = [body for _, body in records]
    users = ["ann", "ann", "bob", "ann", "cid"]
    await put(settings, bodies, users)
    await put(settings, bodies[:3], users[:3])  # a producer's retries: the same events again
    # Then one more event per user: once stored, everything before it on its shard has been read.
    await put(settings, [_reviewed("ann", "approve")[1], _reviewed("bob", "approve")[1]], ["ann", "bob"])
    async with worker(settings, "w1"):
        await wait_until(lambda: _count_at_least(db, "SELECT count(*) FROM fraud_predictions", 7), what="7 rows")
    opened = await db.fetch("SELECT user_id, state, transactions, amount, expected_loss FROM cases ORDER BY user_id")
    assert [(r["user_id"], r["state"], r["transactions"]) for r in opened] == [("ann", "open", 2), ("bob", "open", 1)]
    assert opened[0]["amount"] == pytest.approx(200.0)
    assert opened[0]["expected_loss"] == pytest.approx(40.0)
    in_cases = {str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM case_events")}
    assert in_cases == {records[0][0], records[1][0], records[2][0]}
    changes = [r["change"] for r in await db.fetch("SELECT change FROM case_audit ORDER BY id")]
    assert changes.count("opened") == 2


async def _count_at_least(db: asyncpg.Connection, sql: str, expected: int) -> bool:
    return int(await db.fetchval(sql)) >= expected


async def _case_with(db: asyncpg.Connection, user: str, transactions: int = 1) -> tuple[int, list[uuid.UUID]]:
    """A case as the consumer opens it, for `transactions` stored review decisions of `user`."""
    ids = [uuid.uuid4() for _ in range(transactions)]
    for event_id in ids:
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, event_id, decision, model_version, amount, received_at)
               VALUES (now(), $1, 'test', 0, 0.3, 0.1, $2, 'review', 'v1', 50, now())""",
            user,
            event_id,
        )
    await db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS new_rows AS SELECT * FROM fraud_predictions WITH NO DATA; TRUNCATE new_rows"
    )
    await db.execute("INSERT INTO new_rows SELECT * FROM fraud_predictions WHERE event_id = ANY($1::uuid[])", ids)
    await db.execute("SELECT fraudflow_open_cases('new_rows'::regclass)")
    case_id = await db.fetchval("SELECT id FROM cases WHERE user_id = $1 AND state <> 'closed'", user)
    return int(case_id), ids


async def test_two_analysts_never_get_the_same_case_and_an_abandoned_claim_expires(
    db: asyncpg.Connection, database_url: str
) -> None:
    for user in ("u1", "u2", "u3"):
        await _case_with(db, user)
    connections = [await asyncpg.connect(database_url) for _ in range(6)]
    try:
        claimed = await asyncio.gather(*(cases.claim_next(c, f"analyst-{i}") for i, c in enumerate(connections)))
    finally:
        for c in connections:
            await c.close()
    got = [c["id"] for c in claimed if c is not None]
    assert len(got) == 3
    assert len(set(got)) == 3  # three cases, three analysts, never one case twice
    assert sum(c is None for c in claimed) == 3

    # A claim not closed in time goes back to the queue; the analyst holding one gets it back first.
    holder = next(c for c in claimed if c is not None)
    again = await cases.claim_next(db, holder["claimed_by"])
    assert again is not None
    assert again["id"] == holder["id"]
    await db.execute("UPDATE cases SET claim_expires_at = now() - interval '1 second' WHERE id = $1", holder["id"])
    taken = await cases.claim_next(db, "analyst-late", claim_for=timedelta(minutes=5))
    assert taken is not None
    assert taken["id"] == holder["id"]
    with pytest.raises(cases.CaseError, match="claimed by analyst-late"):
        await cases.close(db, holder["id"], holder["claimed_by"], cases.Outcome.FRAUD)


async def test_closing_a_case_labels_its_transactions_and_the_next_review_opens_a_new_case(
    db: asyncpg.Connection,
) -> None:
    case_id, ids = await _case_with(db, "eve", transactions=2)
    with pytest.raises(cases.CaseError, match="not claimed"):
        await cases.close(db, case_id, "ana", cases.Outcome.FRAUD)
    claimed = await cases.claim_next(db, "ana")
    assert claimed is not None
    assert claimed["id"] == case_id
    await cases.add_note(db, case_id, "ana", "card used in two countries within the hour")
    assert await cases.close(db, case_id, "ana", cases.Outcome.FRAUD, "confirmed with the cardholder") == 2
    labels = await db.fetch("SELECT event_id, label, source, author FROM latest_labels ORDER BY event_id")
    assert {(r["event_id"], r["label"], r["source"], r["author"]) for r in labels} == {
        (i, "fraud", "analyst", "ana") for i in ids
    }
    with pytest.raises(cases.CaseError, match="already closed"):
        await cases.close(db, case_id, "ana", cases.Outcome.LEGITIMATE)
    trail = [(r["actor"], r["change"]) for r in await db.fetch("SELECT actor, change FROM case_audit ORDER BY id")]
    assert trail == [
        ("consumer", "opened"),
        ("consumer", "transactions added"),
        ("ana", "claimed"),
        ("ana", "note"),
        ("ana", "closed"),
    ]
    reopened, _ = await _case_with(db, "eve")
    assert reopened != case_id
    queue = await cases.queue(db)
    assert (queue.open, queue.in_review) == (1, 0)
