"""Rebuild the online feature store from `fraud_predictions`: the transactions of the last 7 days of
transaction time, replayed in time order through the store's own script. The store is idempotent, so this
is safe on a live store (events it holds change nothing) and after losing it (a failover without a
replica, a flush)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import asyncpg

from fraudflow.behaviour.definitions import USER_HISTORY_S, Activity
from fraudflow.behaviour.online import OnlineStore

BATCH = 500

_ROWS = """
SELECT event_id, user_id, "timestamp", amount, device_id, ip_address, country, latitude, longitude
  FROM fraud_predictions
 WHERE "timestamp" > (SELECT max("timestamp") FROM fraud_predictions) - $1::interval
 ORDER BY "timestamp", event_id"""


def _activity(row: asyncpg.Record) -> Activity:
    return Activity(
        event_id=str(row["event_id"]),
        user_id=row["user_id"],
        time_s=row["timestamp"].timestamp(),
        amount=float(row["amount"] or 0.0),
        device_id=row["device_id"],
        ip_address=row["ip_address"],
        country=row["country"],
        latitude=row["latitude"],
        longitude=row["longitude"],
    )


async def rebuild(conn: asyncpg.Connection, store: OnlineStore, progress: Callable[[int], None] | None = None) -> int:
    """Replay the stored transactions of the last 7 days into the store; returns how many."""
    done, batch = 0, list[Activity]()
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(_ROWS, timedelta(seconds=USER_HISTORY_S), prefetch=BATCH * 4):
            batch.append(_activity(row))
            if len(batch) == BATCH:
                await store.observe(batch)
                done += len(batch)
                batch.clear()
                if progress:
                    progress(done)
        if batch:
            await store.observe(batch)
            done += len(batch)
    return done
