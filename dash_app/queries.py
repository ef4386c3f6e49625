"""Every query of the dashboard, in one place: aggregation in SQL, values always bound as parameters.

Column names never come from user input: dimensions and sort keys are looked up in fixed tables, and
unknown ones are refused. Time windows filter on `received_at` (when the API received the transaction),
which is indexed.

Long unfiltered ranges (chart buckets of a quarter hour or more: from about 8 hours up) read the quarter-hour
aggregates the consumer maintains (migrations 0003, 0008) instead of the rows, so their cost follows the number
of quarter hours, not of transactions. The partial quarter hours at either end of such a range come from the
rows, binned by the same SQL functions the consumer stores the aggregates with (`_rolled`), so every figure is
exactly the range's. Its latency percentiles are estimated from a histogram (`LATENCY_EDGES`). Short ranges and
filtered views read the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers.leases.status import lease_status

DIMENSIONS = {"country": "country", "source": "source", "device_type": "device_type"}  # the filter menus
BREAKDOWNS = {**DIMENSIONS, "city": "city"}  # the charts of rates by value
SORTABLE = {
    "received_at": "received_at",
    "fraud_proba": "fraud_proba",
    "amount": "amount",
    "anomaly_score": "anomaly_score",
    "user_id": "user_id",
    "country": "country",
}
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SCORE_BINS = 20
FLAGGED_COUNT_LIMIT = 10_000
AGGREGATE_BUCKET = timedelta(minutes=15)
# Latency bin edges in seconds, as fraudflow_latency_edges() in migration 0003 (a test checks they agree).
LATENCY_EDGES = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)


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

    def aggregate_window(self) -> tuple[datetime, datetime] | None:
        """[start, end) when the aggregates can answer: no filters, quarter-hour buckets."""
        filtered = self.countries or self.sources or self.device_types or self.decisions or self.min_proba > 0
        if filtered or bucket_for(self.end - self.start) < AGGREGATE_BUCKET:
            return None
        return self.start, self.end


def _rolled(table: str, first: int = 1) -> str:
    """A FROM item with `table`'s rows for the window [$first, $first + 1): its whole quarter hours from the
    stored aggregates, its partial ones at either end computed from the rows by the function the consumer
    stores them with (fraudflow_<name>_of)."""
    start, end = f"${first}::timestamptz", f"${first + 1}::timestamptz"
    function = "fraudflow_" + table.removeprefix("fraud_").removesuffix("_15m") + "_of"
    return f"""(SELECT * FROM {table}
                 WHERE bucket >= fraudflow_quarter_ceil({start}) AND bucket < fraudflow_quarter({end})
                UNION ALL
                SELECT part.* FROM fraudflow_edges({start}, {end}) AS edge,
                       LATERAL {function}('fraud_predictions', edge.lo, edge.hi) AS part) AS {table}"""


def latency_quantile(counts: Mapping[int, int], q: float) -> float | None:
    """Estimate a latency quantile from histogram counts by bin (linear within a bin)."""
    total = sum(counts.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for index in sorted(counts):
        n = counts[index]
        if n and seen + n >= rank:
            low = 0.0 if index == 0 else float(LATENCY_EDGES[index - 1])
            high = float(LATENCY_EDGES[min(index, len(LATENCY_EDGES) - 1)])
            return low + (high - low) * (rank - seen) / n
        seen += n
    return float(LATENCY_EDGES[-1])


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
    window = f.aggregate_window()
    if window is not None:
        return await _kpis_from_aggregates(conn, f, window)
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
                   coalesce(array_agg(DISTINCT model_version), '{{}}') AS model_versions
              FROM fraud_predictions WHERE {where}""",
        *args,
    )
    assert row is not None
    return _with_rates(dict(row), f)


def _with_rates(out: dict[str, Any], f: Filters) -> dict[str, Any]:
    """Flagged is what the flagged table lists (review or decline); rates are over the whole range."""
    out["flagged"] = out["reviews"] + out["declines"]
    out["flag_rate"] = out["flagged"] / out["transactions"] if out["transactions"] else 0.0
    out["events_per_s"] = out["transactions"] / (f.end - f.start).total_seconds()
    return out


async def _kpis_from_aggregates(
    conn: asyncpg.Connection, f: Filters, window: tuple[datetime, datetime]
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""SELECT coalesce(sum(transactions), 0)::bigint AS transactions,
                  coalesce(sum(frauds), 0)::bigint AS frauds,
                  coalesce(sum(transactions) FILTER (WHERE decision = 'review'), 0)::bigint AS reviews,
                  coalesce(sum(transactions) FILTER (WHERE decision = 'decline'), 0)::bigint AS declines,
                  sum(sum_proba) / nullif(sum(transactions), 0) AS mean_proba,
                  coalesce(array_agg(DISTINCT model_version), '{{}}') AS model_versions
             FROM {_rolled("fraud_stats_15m")}""",
        *window,
    )
    assert row is not None
    out = dict(row)
    latency = {r["bin"]: r["n"] for r in await _latency_bins(conn, window, None)}
    out["latency_p50_s"] = latency_quantile(latency, 0.5)
    out["latency_p95_s"] = latency_quantile(latency, 0.95)
    return _with_rates(out, f)


async def _latency_bins(
    conn: asyncpg.Connection, window: tuple[datetime, datetime], size: timedelta | None
) -> list[asyncpg.Record]:
    """Latency histogram counts over the window, per chart bucket of `size` (or one bucket: None)."""
    return list(
        await conn.fetch(
            f"""SELECT CASE WHEN $1::interval IS NULL THEN NULL ELSE date_bin($1, bucket, $2) END AS bucket,
                       bin, sum(n)::bigint AS n
                  FROM {_rolled("fraud_histograms_15m", 3)}
                 WHERE metric = 'latency'
                 GROUP BY 1, 2""",
            size,
            _EPOCH,
            *window,
        )
    )


async def volume(conn: asyncpg.Connection, f: Filters) -> list[dict[str, Any]]:
    window = f.aggregate_window()
    if window is not None:
        return await _volume_from_aggregates(conn, f, window)
    where, args = f.where(3)
    rows = await conn.fetch(
        f"""SELECT date_bin($1, received_at, $2) AS bucket, count(*) AS transactions,
                   count(*) FILTER (WHERE fraud_prediction = 1) AS frauds,
                   count(*) FILTER (WHERE decision = 'review') AS reviews,
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


async def _volume_from_aggregates(
    conn: asyncpg.Connection, f: Filters, window: tuple[datetime, datetime]
) -> list[dict[str, Any]]:
    size = bucket_for(f.end - f.start)
    rows = await conn.fetch(
        f"""SELECT date_bin($1, bucket, $2) AS bucket, sum(transactions)::bigint AS transactions,
                   sum(frauds)::bigint AS frauds,
                   coalesce(sum(transactions) FILTER (WHERE decision = 'review'), 0)::bigint AS reviews
              FROM {_rolled("fraud_stats_15m", 3)} GROUP BY 1 ORDER BY 1""",
        size,
        _EPOCH,
        *window,
    )
    latency: dict[datetime, dict[int, int]] = {}
    for r in await _latency_bins(conn, window, size):
        latency.setdefault(r["bucket"], {})[r["bin"]] = r["n"]
    out = []
    for r in rows:
        counts = latency.get(r["bucket"], {})
        out.append(
            {
                **dict(r),
                "latency_p50_s": latency_quantile(counts, 0.5),
                "latency_p95_s": latency_quantile(counts, 0.95),
            }
        )
    return out


async def by_model(conn: asyncpg.Connection, f: Filters) -> list[dict[str, Any]]:
    """Each model version scoring in the range: transactions, review and decline counts, mean p(fraud)."""
    window = f.aggregate_window()
    if window is not None:
        rows = await conn.fetch(
            f"""SELECT model_version, sum(transactions)::bigint AS transactions,
                       coalesce(sum(transactions) FILTER (WHERE decision = 'review'), 0)::bigint AS reviews,
                       coalesce(sum(transactions) FILTER (WHERE decision = 'decline'), 0)::bigint AS declines,
                       sum(sum_proba) / sum(transactions) AS mean_proba
                  FROM {_rolled("fraud_stats_15m")} GROUP BY 1 ORDER BY 2 DESC, 1""",
            *window,
        )
        return [dict(r) for r in rows]
    where, args = f.where()
    rows = await conn.fetch(
        f"""SELECT model_version, count(*) AS transactions, count(*) FILTER (WHERE decision = 'review') AS reviews,
                   count(*) FILTER (WHERE decision = 'decline') AS declines, avg(fraud_proba) AS mean_proba
              FROM fraud_predictions WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1""",
        *args,
    )
    return [dict(r) for r in rows]


async def distributions(conn: asyncpg.Connection, f: Filters) -> list[dict[str, Any]]:
    """Histogram counts of fraud probability and anomaly score (`metric`), per decision (bin 1..SCORE_BINS)."""
    window = f.aggregate_window()
    if window is not None:
        rows = await conn.fetch(
            f"""SELECT decision, metric, bin, sum(n)::bigint AS n FROM {_rolled("fraud_histograms_15m")}
                 WHERE metric IN ('fraud_proba', 'anomaly_score')
                 GROUP BY 1, 2, 3""",
            *window,
        )
        return [dict(r) for r in rows]
    where, args = f.where(2)
    rows = await conn.fetch(
        f"""SELECT decision, CASE WHEN GROUPING(proba_bin) = 0 THEN 'fraud_proba' ELSE 'anomaly_score' END AS metric,
                   coalesce(proba_bin, anomaly_bin) AS bin, count(*) AS n
              FROM (SELECT decision, least(width_bucket(fraud_proba, 0, 1, $1), $1) AS proba_bin,
                           least(width_bucket(anomaly_score, 0, 1, $1), $1) AS anomaly_bin
                      FROM fraud_predictions WHERE {where}) AS binned
             GROUP BY GROUPING SETS ((decision, proba_bin), (decision, anomaly_bin))""",
        SCORE_BINS,
        *args,
    )
    return [dict(r) for r in rows]


async def breakdown(conn: asyncpg.Connection, f: Filters, dimension: str, limit: int = 12) -> list[dict[str, Any]]:
    column = BREAKDOWNS[dimension]  # KeyError for anything not whitelisted
    window = f.aggregate_window()
    if window is not None:
        rows = await conn.fetch(
            f"""SELECT value, sum(transactions)::bigint AS transactions, sum(frauds)::bigint AS frauds,
                       sum(sum_proba) / sum(transactions) AS mean_proba
                  FROM {_rolled("fraud_dimensions_15m", 2)} WHERE dimension = $1
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $4""",
            column,
            *window,
            limit,
        )
        return [dict(r) for r in rows]
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
    """Transactions by place (rounded to 0.1 degree) and city, with their mean fraud probability."""
    window = f.aggregate_window()
    if window is not None:
        rows = await conn.fetch(
            f"""SELECT latitude, longitude, coalesce(nullif(city, ''), '(unknown)') AS city,
                       sum(transactions)::bigint AS transactions, sum(sum_proba) / sum(transactions) AS mean_proba
                  FROM {_rolled("fraud_places_15m")}
                 GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT $3""",
            *window,
            limit,
        )
        return [dict(r) for r in rows]
    where, args = f.where(2)
    rows = await conn.fetch(
        f"""SELECT round(latitude::numeric, 1)::float AS latitude, round(longitude::numeric, 1)::float AS longitude,
                   coalesce(city, '(unknown)') AS city, count(*) AS transactions, avg(fraud_proba) AS mean_proba
              FROM fraud_predictions WHERE {where} AND latitude IS NOT NULL AND longitude IS NOT NULL
             GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT $1""",
        limit,
        *args,
    )
    return [dict(r) for r in rows]


async def options(conn: asyncpg.Connection, f: Filters) -> dict[str, list[str]]:
    """Values offered in the filter menus: those present in the selected time range."""
    window = f.aggregate_window()
    if window is not None:
        rows = await conn.fetch(
            f"""SELECT dimension, value FROM {_rolled("fraud_dimensions_15m")}
                 WHERE value <> '(unknown)' GROUP BY 1, 2 ORDER BY 1, 2""",
            *window,
        )
        return {
            name: [r["value"] for r in rows if r["dimension"] == column][:200] for name, column in DIMENSIONS.items()
        }
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


async def confirmed(conn: asyncpg.Connection, f: Filters) -> dict[str, Any]:
    """Fraud confirmed by labels (analysts, chargebacks) among the range's transactions, and how many of those
    were flagged: what the decisions caught, next to what they flagged."""
    where, args = f.where()
    row = await conn.fetchrow(
        f"""SELECT count(*) FILTER (WHERE l.label = 'fraud') AS confirmed,
                   count(*) FILTER (WHERE l.label = 'fraud' AND p.decision <> 'approve') AS confirmed_flagged,
                   count(*) AS labelled
              FROM (SELECT event_id, decision FROM fraud_predictions WHERE {where}) AS p
              JOIN latest_labels AS l USING (event_id)""",
        *args,
    )
    assert row is not None
    return dict(row)


def refresh(f: Filters) -> dict[str, tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]]:
    """Every query of one dashboard refresh, by the name of what it feeds (run concurrently)."""
    return {
        "kpis": (kpis, (f,)),
        "confirmed": (confirmed, (f,)),
        "volume": (volume, (f,)),
        "distributions": (distributions, (f,)),
        "models": (by_model, (f,)),
        "places": (places, (f,)),
        "by_country": (breakdown, (f, "country")),
        "by_city": (breakdown, (f, "city")),
        "by_source": (breakdown, (f, "source")),
        "by_device": (breakdown, (f, "device_type")),
        "leases": (leases, ()),
        "newest_row_age_s": (newest_row_age_s, ()),
        "api_flow": (api_flow, ()),
        "options": (options, (f,)),
    }


async def flagged(
    conn: asyncpg.Connection,
    f: Filters,
    *,
    page: int,
    page_size: int,
    sort: str = "received_at",
    descending: bool = True,
    count_limit: int = FLAGGED_COUNT_LIMIT,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of flagged (review or decline) transactions, and how many there are, up to `count_limit`.

    The count only sets the number of pages; counting a week of flagged rows would cost more than the rest of
    the refresh, so paging reaches the first `count_limit` rows of the chosen order."""
    column = SORTABLE[sort]
    count_where, args = f.where(2)
    total = await conn.fetchval(
        f"""SELECT count(*) FROM (SELECT 1 FROM fraud_predictions WHERE {count_where} AND decision <> 'approve'
                                  LIMIT $1) AS capped""",
        count_limit,
        *args,
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


# Entity pages, by the column that names them.
ENTITIES = {"user": "user_id", "ip": "ip_address", "device": "device_id"}
_HISTORY_COLUMNS = """event_id, received_at, user_id, ip_address, device_id, country, city, latitude, longitude,
                      source, device_type, amount, fraud_proba, anomaly_score, decision, behaviour,
                      features_degraded"""


async def history(conn: asyncpg.Connection, entity: str, value: str, limit: int = 50) -> list[dict[str, Any]]:
    """An entity's most recent transactions, newest first."""
    column = ENTITIES[entity]  # KeyError for anything not whitelisted
    rows = await conn.fetch(
        f"SELECT {_HISTORY_COLUMNS} FROM fraud_predictions WHERE {column} = $1 ORDER BY received_at DESC LIMIT $2",
        value,
        limit,
    )
    return [dict(r) for r in rows]


async def shared_with(conn: asyncpg.Connection, entity: str, value: str, limit: int = 20) -> list[dict[str, Any]]:
    """Other users seen on the IPs this user used (entity "user"), or the users of an IP or a device, with how
    many transactions each: one IP or device shared by many users is a mule or a proxy."""
    if entity in ("ip", "device"):
        column = ENTITIES[entity]
        sql = f"""SELECT user_id, {column} AS via, count(*) AS transactions FROM fraud_predictions
                  WHERE {column} = $1 GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT $2"""
    else:
        sql = """SELECT other.user_id, other.ip_address AS via, count(*) AS transactions
                   FROM (SELECT DISTINCT ip_address FROM fraud_predictions
                          WHERE user_id = $1 AND ip_address IS NOT NULL) AS mine
                   JOIN fraud_predictions AS other ON other.ip_address = mine.ip_address AND other.user_id <> $1
                  GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT $2"""
    return [dict(r) for r in await conn.fetch(sql, value, limit)]


async def newest_row_age_s(conn: asyncpg.Connection) -> float | None:
    """Seconds since the newest stored transaction was received (whatever range is shown): freshness now."""
    age = await conn.fetchval("SELECT extract(epoch FROM now() - max(received_at)) FROM fraud_predictions")
    return None if age is None else float(age)


async def api_flow(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the API processes' heartbeats say about the 5 whole minutes ending a minute ago (so a record
    received in them has had a minute to be stored): transactions answered, published and answered 503,
    against the rows stored for the same minutes; how many processes reported in the last 30 s, and how long
    since any did (None: none in the last hour)."""
    row = await conn.fetchrow(
        """WITH span AS (SELECT date_trunc('minute', now()) - interval '6 minutes' AS lo,
                                date_trunc('minute', now()) - interval '1 minute' AS hi)
           SELECT (SELECT count(DISTINCT process) FROM api_heartbeats
                    WHERE reported_at > now() - interval '30 seconds') AS processes,
                  (SELECT extract(epoch FROM now() - max(reported_at)) FROM api_heartbeats
                    WHERE minute > now() - interval '1 hour') AS silent_s,
                  coalesce(sum(h.answered), 0)::bigint AS answered,
                  coalesce(sum(h.published), 0)::bigint AS published,
                  coalesce(sum(h.unavailable), 0)::bigint AS unavailable,
                  (SELECT count(*) FROM fraud_predictions
                    WHERE received_at >= span.lo AND received_at < span.hi) AS stored
             FROM span LEFT JOIN api_heartbeats AS h ON h.minute >= span.lo AND h.minute < span.hi
            GROUP BY span.lo, span.hi"""
    )
    assert row is not None  # one row: span has one, and the join is an outer one
    flow = dict(row)
    flow["silent_s"] = None if flow["silent_s"] is None else float(flow["silent_s"])
    return flow


async def leases(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return await lease_status(conn)
