"""Dashboard refresh cost with 1,000,000 rows: every panel's queries for a 24 h range vs a 15 min range.

Rows are spread evenly over the last 7 days, with the simulator's places, sources and devices; the
quarter-hour aggregates are built by the function the consumer calls at every flush. A refresh is
`dash_app.queries.refresh`, run the way the app runs it (concurrently, through its connection pool), plus the
first page of the flagged table. Goals (issue 6): 24 h <= 300 ms and <= 10x 15 min.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.report import publish
from consumers.processor.rows import COLUMNS as ROW_COLUMNS
from dash_app import queries
from dash_app.database import Database
from fraudflow.db.migrate import migrate
from fraudflow.local.postgres import EmbeddedPostgres
from fraudflow.simulation.population import CITIES, DEVICES, SOURCES

# The consumer's columns (one list, consumers/processor/rows.py) and the write time, which latency needs.
COLUMNS = [*ROW_COLUMNS, "processed_at"]


def rows(first: int, count: int, total: int, now: datetime, rng: random.Random) -> list[tuple[Any, ...]]:
    """Rows first..first+count of `total`, spread evenly over the week before `now` (newest first)."""
    out = []
    week = 7 * 24 * 3600
    features = [0.1] * 30
    for i in range(first, first + count):
        received = now - timedelta(seconds=week * i / total)
        proba = rng.random() ** 6
        decision = "decline" if proba > 0.8 else "review" if proba > 0.3 else "approve"
        country, _, _, latitude, longitude = rng.choice(CITIES)
        row = {
            "timestamp": received,
            "user_id": f"user-{rng.randrange(50_000)}",
            "source": rng.choice(SOURCES),
            "fraud_prediction": int(decision == "decline"),
            "fraud_proba": proba,
            "anomaly_score": rng.random(),
            "device_type": rng.choice(DEVICES)[0],
            "country": country,
            "latitude": latitude + rng.uniform(-0.05, 0.05),
            "longitude": longitude + rng.uniform(-0.05, 0.05),
            "event_id": uuid.uuid4(),
            "decision": decision,
            "model_version": "v1",
            "amount": rng.lognormvariate(3, 1.2),
            "received_at": received,
            "processed_at": received + timedelta(milliseconds=rng.randrange(900)),
            "features": features,
        }
        out.append(tuple(row.get(column) for column in COLUMNS))
    return out


async def load(url: str, total: int, now: datetime) -> None:
    conn = await asyncpg.connect(url)
    await migrate(conn)
    rng = random.Random(1)
    for first in range(0, total, 100_000):
        batch = rows(first, min(100_000, total - first), total, now, rng)
        await conn.copy_records_to_table("fraud_predictions", records=batch, columns=COLUMNS)
    await conn.execute("SELECT fraudflow_add_to_rollups('fraud_predictions')")
    await conn.execute("VACUUM ANALYZE")  # what autovacuum does to an insert-only table
    await conn.close()


def timed(db: Database, f: queries.Filters, repeats: int) -> float:
    """Median time of one full refresh: every panel's queries, then the first page of the flagged table."""
    db.gather(queries.refresh(f))  # warm: plans, caches, pool
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        db.gather(queries.refresh(f))
        db.run(_first_page, f)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2]


async def _first_page(conn: asyncpg.Connection, f: queries.Filters) -> Any:
    return await queries.flagged(conn, f, page=0, page_size=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-dash-"))
    server = EmbeddedPostgres(work / "pg", durable=True)
    server.start()
    now = datetime.now(UTC)
    try:
        started = time.perf_counter()
        asyncio.run(load(server.url(), args.rows, now))
        loaded_s = time.perf_counter() - started
        db = Database(server.url())
        results = {}
        for name, span in (
            ("15m", timedelta(minutes=15)),
            ("1h", timedelta(hours=1)),
            ("24h", timedelta(hours=24)),
            ("7d", timedelta(days=7)),
        ):
            results[name] = round(timed(db, queries.Filters(now - span, now), args.repeats) * 1000, 1)
        # A filtered view reads the rows of its range (no goal; reported so the cost is known).
        one_country = queries.Filters(now - timedelta(hours=24), now, countries=("FR",))
        results["24h FR only"] = round(timed(db, one_country, args.repeats) * 1000, 1)
        db.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = round(results["24h"] / results["15m"], 2)
    goals = {"24h refresh <= 300 ms": results["24h"] <= 300, "24h <= 10x 15min": ratio <= 10}
    summary = [f"{args.rows:,} rows loaded in {loaded_s:.0f} s; full refresh (all panels + first table page):"]
    summary += [f"  {name:>11}: {ms:8.1f} ms" for name, ms in results.items()]
    summary.append(f"24h / 15min = {ratio}")
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("dashboard", {"rows": args.rows, "refresh_ms": results, "ratio_24h_to_15m": ratio, "goals": goals}, summary)


if __name__ == "__main__":
    main()
