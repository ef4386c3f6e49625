"""Every query of the dashboard, in one place: aggregation in SQL, values always bound as parameters.

Column names never come from user input: dimensions and sort keys are looked up in fixed tables, and
unknown ones are refused. Time windows filter on `received_at` (when the API received the transaction),
which is indexed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

DIMENSIONS = {"country": "country", "source": "source", "device_type": "device_type"}
SORTABLE = {
    "received_at": "received_at",
    "fraud_proba": "fraud_proba",
    "amount": "amount",
    "anomaly_score": "anomaly_score",
    "user_id": "user_id",
    "country": "country",
}
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    countries: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    device_types: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    min_proba: float = 0.0

    def where(self, first: int = 1) -> tuple[str, list[Any]]:
        """The WHERE clause and its arguments; placeholders start at $first."""
        args: list[Any] = [self.start, self.end]
        clauses = [f"received_at >= ${first}", f"received_at < ${first + 1}"]
        for column, values in (
            ("country", self.countries),
            ("source", self.sources),
            ("device_type", self.device_types),
            ("decision", self.decisions),
        ):
            if values:
                args.append(list(values))
                clauses.append(f"{column} = ANY(${first + len(args) - 1}::text[])")
        if self.min_proba > 0:
            args.append(self.min_proba)
            clauses.append(f"fraud_proba >= ${first + len(args) - 1}")
        return " AND ".join(clauses), args


def bucket_for(span: timedelta) -> timedelta:
    """About 60-100 buckets whatever the range: 10 s for 15 minutes, 15 min for a day, 2 h for a week."""
    for size in (
        timedelta(seconds=10),
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(hours=6),
    ):
        if span / size <= 100:
            return size
    return timedelta(days=1)


async def kpis(conn: asyncpg.Connection, f: Filters) -> dict[str, Any]:
    where, args = f.where()
    row = await conn.fetchrow(
        f"""SELECT count(*) AS transactions,
                   count(*) FILTER (WHERE fraud_prediction = 1) AS frauds,
                   count(*) FILTER (WHERE decision = 'review') AS reviews,
                   count(*) FILTER (WHERE decision = 'decline') AS declines,
                   avg(fraud_proba) AS mean_proba,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
                       AS latency_p50_s,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
                       AS latency_p95_s,
                   count(*) FILTER (WHERE received_at >= $2::timestamptz - interval '60 seconds') / 60.0
                       AS events_per_s,
                   coalesce(array_agg(DISTINCT model_version), '{{}}') AS model_versions
              FROM fraud_predictions WHERE {where}""",
        *args,
    )
    assert row is not None
    out = dict(row)
    out["fraud_rate"] = out["frauds"] / out["transactions"] if out["transactions"] else 0.0
    out["events_per_s"] = float(out["events_per_s"])
    return out


async def volume(conn: asyncpg.Connection, f: Filters) -> list[dict[str, Any]]:
    where, args = f.where(3)
    rows = await conn.fetch(
        f"""SELECT date_bin($1, received_at, $2) AS bucket, count(*) AS transactions,
                   count(*) FILTER (WHERE fraud_prediction = 1) AS frauds,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
                       AS latency_p50_s,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
                       AS latency_p95_s
              FROM fraud_predictions WHERE {where} GROUP BY 1 ORDER BY 1""",
        bucket_for(f.end - f.start),
        _EPOCH,
        *args,
    )
    return [dict(r) for r in rows]


async def distributions(conn: asyncpg.Connection, f: Filters, bins: int = 20) -> list[dict[str, Any]]:
    """Histogram counts of fraud probability and anomaly score, per decision (bin 1..bins)."""
    where, args = f.where(2)
    rows = await conn.fetch(
        f"""SELECT decision, least(width_bucket(fraud_proba, 0, 1, $1), $1) AS proba_bin,
                   least(width_bucket(anomaly_score, 0, 1, $1), $1) AS anomaly_bin, count(*) AS n
              FROM fraud_predictions WHERE {where} GROUP BY 1, 2, 3""",
        bins,
        *args,
    )
    return [dict(r) for r in rows]


async def breakdown(conn: asyncpg.Connection, f: Filters, dimension: str, limit: int = 12) -> list[dict[str, Any]]:
    column = DIMENSIONS[dimension]  # KeyError for anything not whitelisted
    where, args = f.where(2)
    rows = await conn.fetch(
        f"""SELECT coalesce({column}, '(unknown)') AS value, count(*) AS transactions,
                   count(*) FILTER (WHERE fraud_prediction = 1) AS frauds, avg(fraud_proba) AS mean_proba
              FROM fraud_predictions WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1""",
        limit,
        *args,
    )
    return [dict(r) for r in rows]


async def places(conn: asyncpg.Connection, f: Filters, limit: int = 2000) -> list[dict[str, Any]]:
    """Transactions by place (rounded to 0.1 degree) with their mean fraud probability."""
    where, args = f.where(2)
    rows = await conn.fetch(
        f"""SELECT round(latitude::numeric, 1)::float AS latitude, round(longitude::numeric, 1)::float AS longitude,
                   count(*) AS transactions, avg(fraud_proba) AS mean_proba
              FROM fraud_predictions WHERE {where} AND latitude IS NOT NULL AND longitude IS NOT NULL
             GROUP BY 1, 2 ORDER BY 3 DESC LIMIT $1""",
        limit,
        *args,
    )
    return [dict(r) for r in rows]


async def options(conn: asyncpg.Connection, f: Filters) -> dict[str, list[str]]:
    """Values offered in the filter menus: those present in the selected time range."""
    out = {}
    for name, column in DIMENSIONS.items():
        rows = await conn.fetch(
            f"SELECT DISTINCT {column} AS v FROM fraud_predictions "
            f"WHERE received_at >= $1 AND received_at < $2 AND {column} IS NOT NULL ORDER BY 1 LIMIT 200",
            f.start,
            f.end,
        )
        out[name] = [r["v"] for r in rows]
    return out


def refresh(f: Filters) -> list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]]:
    """Every query of one dashboard refresh (run concurrently); the order is the callback's."""
    return [
        (kpis, (f,)),
        (volume, (f,)),
        (distributions, (f,)),
        (places, (f,)),
        (breakdown, (f, "country")),
        (breakdown, (f, "source")),
        (breakdown, (f, "device_type")),
        (leases, ()),
        (options, (f,)),
    ]


async def flagged(
    conn: asyncpg.Connection,
    f: Filters,
    *,
    page: int,
    page_size: int,
    sort: str = "received_at",
    descending: bool = True,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of flagged (review or decline) transactions, and how many there are."""
    column = SORTABLE[sort]
    count_where, args = f.where(1)
    total = await conn.fetchval(
        f"SELECT count(*) FROM fraud_predictions WHERE {count_where} AND decision <> 'approve'", *args
    )
    where, _ = f.where(3)
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT event_id, received_at, user_id, country, source, amount, fraud_proba, anomaly_score, decision
              FROM fraud_predictions WHERE {where} AND decision <> 'approve'
             ORDER BY {column} {direction} NULLS LAST, id {direction} LIMIT $1 OFFSET $2""",
        page_size,
        page * page_size,
        *args,
    )
    return int(total), [dict(r) for r in rows]


async def event(conn: asyncpg.Connection, event_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM fraud_predictions WHERE event_id = $1", event_id)
    return dict(row) if row else None


async def leases(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT application, stream, shard_id, owner, checkpoint, millis_behind_latest,
                  extract(epoch FROM now() - checkpointed_at) AS checkpoint_age_s,
                  extract(epoch FROM now() - updated_at) AS renewed_s_ago
             FROM kinesis_leases ORDER BY application, stream, shard_id"""
    )
    return [dict(r) for r in rows]
