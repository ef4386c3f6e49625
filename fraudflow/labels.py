"""Labels: what turned out to be true of a transaction, from an analyst, a chargeback or an import.

Every label is kept with its source, author and the time it became known; the latest known wins
(`latest_labels`). A label for an event id that was never stored is reported back, never silently dropped.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


class Label(enum.StrEnum):
    FRAUD = "fraud"
    LEGITIMATE = "legitimate"


class LabelSource(enum.StrEnum):
    ANALYST = "analyst"
    CHARGEBACK = "chargeback"
    IMPORT = "import"


@dataclass(frozen=True)
class NewLabel:
    event_id: uuid.UUID
    label: Label
    known_at: datetime  # aware
    note: str | None = None


@dataclass(frozen=True)
class Recorded:
    stored: int
    unknown: list[str]  # event ids no stored transaction has


async def record(conn: asyncpg.Connection, labels: Sequence[NewLabel], source: LabelSource, author: str) -> Recorded:
    """Store the labels of stored transactions in one transaction; report the others."""
    ids = list({label.event_id for label in labels})
    known = {
        row["event_id"]
        for row in await conn.fetch("SELECT event_id FROM fraud_predictions WHERE event_id = ANY($1::uuid[])", ids)
    }
    rows = [
        (label.event_id, label.label.value, source.value, label.known_at, author, label.note)
        for label in labels
        if label.event_id in known
    ]
    if rows:
        await conn.copy_records_to_table(
            "labels", records=rows, columns=["event_id", "label", "source", "known_at", "author", "note"]
        )
    unknown = sorted({str(label.event_id) for label in labels if label.event_id not in known})
    return Recorded(len(rows), unknown)


async def latest(conn: asyncpg.Connection, event_id: uuid.UUID) -> dict[str, object] | None:
    row = await conn.fetchrow("SELECT * FROM latest_labels WHERE event_id = $1", event_id)
    return None if row is None else dict(row)
