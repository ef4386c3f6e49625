"""The review queue: cases of transactions decided `review`, claimed by analysts and closed with an outcome.

The consumer opens cases (migration 0016, in its flush); this module is what analysts do with them, from the
dashboard's review page or any other front end. A claim takes the next open case with
`SELECT ... FOR UPDATE SKIP LOCKED`, so two analysts never get the same one, and expires if abandoned; closing
a case as fraud or legitimate labels each of its transactions (`labels`, source `analyst`). Every change is
in `case_audit` with the analyst's name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fraudflow.errors import ExpectedError
from fraudflow.labels import Label, LabelSource, NewLabel, record

CLAIM_FOR = timedelta(minutes=15)


class Order(enum.StrEnum):
    OLDEST = "oldest"
    EXPECTED_LOSS = "expected_loss"


class Outcome(enum.StrEnum):
    FRAUD = "fraud"
    LEGITIMATE = "legitimate"
    UNSURE = "unsure"


class CaseError(ExpectedError):
    """A change the case's state does not allow (not claimed by this analyst, already closed, unknown)."""


_ORDER_BY = {Order.OLDEST: "opened_at, id", Order.EXPECTED_LOSS: "expected_loss DESC, opened_at, id"}


@dataclass(frozen=True)
class Queue:
    open: int
    in_review: int
    oldest_open_at: datetime | None
    amount_at_stake: float
    expected_loss: float


async def _audit(conn: asyncpg.Connection, case_id: int, actor: str, change: str, **detail: Any) -> None:
    await conn.execute(
        "INSERT INTO case_audit (case_id, actor, change, detail) VALUES ($1, $2, $3, $4::jsonb)",
        case_id,
        actor,
        change,
        orjson.dumps(detail).decode(),
    )


async def queue(conn: asyncpg.Connection) -> Queue:
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'open' OR claim_expires_at < now()) AS open,
                  count(*) FILTER (WHERE state = 'in_review' AND claim_expires_at >= now()) AS in_review,
                  min(opened_at) FILTER (WHERE state = 'open' OR claim_expires_at < now()) AS oldest,
                  coalesce(sum(amount), 0) AS amount, coalesce(sum(expected_loss), 0) AS loss
           FROM cases WHERE state <> 'closed'"""
    )
    assert row is not None
    return Queue(row["open"], row["in_review"], row["oldest"], float(row["amount"]), float(row["loss"]))


async def claim_next(
    conn: asyncpg.Connection, analyst: str, order: Order = Order.OLDEST, claim_for: timedelta = CLAIM_FOR
) -> dict[str, Any] | None:
    """Claim the next case (open, or claimed and abandoned past its expiry) for `analyst`; None if none is
    waiting. A case an analyst already holds comes back first (a reloaded page loses nothing)."""
    async with conn.transaction():
        held = await conn.fetchrow(
            """SELECT * FROM cases WHERE state = 'in_review' AND claimed_by = $1 AND claim_expires_at >= now()
               ORDER BY claimed_at LIMIT 1""",
            analyst,
        )
        if held is not None:
            return dict(held)
        row = await conn.fetchrow(
            f"""WITH next AS (
                    SELECT id FROM cases
                    WHERE state = 'open' OR (state = 'in_review' AND claim_expires_at < now())
                    ORDER BY {_ORDER_BY[order]} LIMIT 1
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE cases c SET state = 'in_review', claimed_by = $1, claimed_at = now(),
                                   claim_expires_at = now() + $2::interval, updated_at = now()
                FROM next WHERE c.id = next.id
                RETURNING c.*""",
            analyst,
            claim_for,
        )
        if row is None:
            return None
        await _audit(conn, row["id"], analyst, "claimed", until=row["claim_expires_at"].isoformat())
        return dict(row)


async def _held(conn: asyncpg.Connection, case_id: int, analyst: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM cases WHERE id = $1 FOR UPDATE", case_id)
    if row is None:
        raise CaseError(f"no case {case_id}")
    if row["state"] == "closed":
        raise CaseError(f"case {case_id} is already closed ({row['outcome']}, by {row['closed_by']})")
    if row["state"] != "in_review" or row["claimed_by"] != analyst:
        holder = f"claimed by {row['claimed_by']}" if row["state"] == "in_review" else "not claimed"
        raise CaseError(f"case {case_id} is {holder}: claim it first")
    return row


async def release(conn: asyncpg.Connection, case_id: int, analyst: str) -> None:
    """Give a claimed case back to the queue."""
    async with conn.transaction():
        await _held(conn, case_id, analyst)
        await conn.execute(
            """UPDATE cases SET state = 'open', claimed_by = NULL, claimed_at = NULL, claim_expires_at = NULL,
                   updated_at = now() WHERE id = $1""",
            case_id,
        )
        await _audit(conn, case_id, analyst, "released")


async def add_note(conn: asyncpg.Connection, case_id: int, analyst: str, note: str) -> None:
    async with conn.transaction():
        await _held(conn, case_id, analyst)
        await _audit(conn, case_id, analyst, "note", note=note)


async def close(conn: asyncpg.Connection, case_id: int, analyst: str, outcome: Outcome, note: str | None = None) -> int:
    """Close a case the analyst holds; fraud or legitimate labels each of its transactions (the number
    labelled is returned), unsure labels none."""
    async with conn.transaction():
        await _held(conn, case_id, analyst)
        await conn.execute(
            """UPDATE cases SET state = 'closed', outcome = $2, closed_by = $3, closed_at = now(),
                   claim_expires_at = NULL, updated_at = now() WHERE id = $1""",
            case_id,
            outcome.value,
            analyst,
        )
        labelled = 0
        if outcome is not Outcome.UNSURE:
            events = await conn.fetch("SELECT event_id FROM case_events WHERE case_id = $1", case_id)
            now = datetime.now(UTC)
            labels = [NewLabel(e["event_id"], Label(outcome.value), now, note) for e in events]
            labelled = (await record(conn, labels, LabelSource.ANALYST, analyst)).stored
        await _audit(conn, case_id, analyst, "closed", outcome=outcome.value, note=note, labelled=labelled)
        return labelled


async def case(conn: asyncpg.Connection, case_id: int) -> dict[str, Any] | None:
    """A case with its transactions (newest first, with their reasons) and its audit trail."""
    row = await conn.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
    if row is None:
        return None
    transactions = await conn.fetch(
        """SELECT p.event_id, p."timestamp", p.amount, p.fraud_proba, p.decision, p.decided_by, p.reasons,
                  p.device_id, p.ip_address, p.country, p.city, l.label
           FROM case_events e JOIN fraud_predictions p USING (event_id)
           LEFT JOIN latest_labels l USING (event_id)
           WHERE e.case_id = $1 ORDER BY p."timestamp" DESC""",
        case_id,
    )
    trail = await conn.fetch("SELECT at, actor, change, detail FROM case_audit WHERE case_id = $1 ORDER BY id", case_id)
    return {"case": dict(row), "transactions": [dict(t) for t in transactions], "audit": [dict(a) for a in trail]}
