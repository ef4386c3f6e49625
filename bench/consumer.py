"""Consumer end to end on the embedded services: throughput, freshness and memory.

1. Throughput: N records already on an 8-shard stream; a plain GetRecords loop over every shard (the
   emulator's ceiling) vs `fraudflow consume` from TRIM_HORIZON until every row is in PostgreSQL, timed
   from its first lease (start-up excluded, as the loop's client is ready when its clock starts).
   These machines are noisy (the loop alone varied from 13k to 21k records/s between runs), so the two
   alternate for several rounds over the same records, and the ratio reported is the median of the rounds'.
2. Freshness at a steady 1,000 events/s: time from PutRecords to the commit that made the row visible
   (PostgreSQL's commit timestamps), p50 and p99.
3. Peak RSS of the consumer process while it runs at full speed.

Goals (issue 5): >= 0.8x the plain loop, p99 freshness <= 1 s, RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.report import publish
from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.db.migrate import migrate
from fraudflow.events import encode_event, sample_event
from fraudflow.local.kinesis import MotoKinesis
from fraudflow.local.postgres import EmbeddedPostgres
from fraudflow.streams import ensure_stream

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 8
EMPTY_TABLES = (
    "TRUNCATE fraud_predictions, fraud_stats_15m, fraud_histograms_15m, fraud_dimensions_15m, fraud_places_15m"
)


def body(i: int, sent_at: datetime) -> bytes:
    return encode_event(
        sample_event(
            timestamp=sent_at,
            received_at=sent_at,
            user_id=f"user-{i % 10_000}",
            source="bench",
            fraud_proba=0.01,
            model_version="bench",
            features=[0.25] * 30,
            device_info=None,
            ip_address=None,
            geo={"country": "fr"},
        )
    )


async def until(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > end:
            raise TimeoutError(f"waited {deadline_s} s for {what}")
        await asyncio.sleep(0.05)


async def stored(conn: asyncpg.Connection) -> int:
    """Rows stored, from the quarter-hour aggregates the consumer keeps in the same transactions: counting the
    table itself every 20 ms would take the CPU the consumer and the emulator are measured on."""
    return int(await conn.fetchval("SELECT coalesce(sum(transactions), 0) FROM fraud_stats_15m"))


async def put(settings: Settings, count: int, start: int = 0) -> None:
    async with kinesis_client(settings) as client:
        for offset in range(0, count, 500):
            now = datetime.now(UTC)
            n = min(500, count - offset)
            await client.put_records(
                StreamName=settings.stream_name,
                Records=[
                    {"Data": body(start + offset + i, now), "PartitionKey": f"user-{start + offset + i}"}
                    for i in range(n)
                ],
            )


async def plain_loop(settings: Settings, expected: int) -> float:
    """Read every shard with bare GetRecords calls: the emulator's ceiling for this data."""
    async with kinesis_client(settings) as client:
        shards = (await client.list_shards(StreamName=settings.stream_name))["Shards"]

        async def drain(shard_id: str) -> int:
            iterator = (
                await client.get_shard_iterator(
                    StreamName=settings.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            seen = 0
            while True:
                page = await client.get_records(ShardIterator=iterator, Limit=10_000)
                seen += len(page["Records"])
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    return seen

        started = time.perf_counter()
        total = sum(await asyncio.gather(*(drain(s["ShardId"]) for s in shards)))
        elapsed = time.perf_counter() - started
    assert total == expected, (total, expected)
    return total / elapsed


def start_consumer(
    settings: Settings, url: str, log: Path, application: str, position: str = "TRIM_HORIZON"
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FRAUDFLOW_STREAM": settings.stream_name,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_KINESIS": settings.kinesis_endpoint_url or "",
        "FRAUDFLOW_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fraudflow.cli",
                "consume",
                "--application",
                application,
                "--initial-position",
                position,
            ],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def consume_all(
    settings: Settings, url: str, expected: int, log: Path, application: str
) -> tuple[float, float, float]:
    """Rows/s from the first lease taken to the last row stored (the plain loop's clock also starts with its
    client ready), rows/s including the process start-up, and peak RSS in MB."""
    conn = await asyncpg.connect(url)
    await conn.execute(EMPTY_TABLES)
    process = start_consumer(settings, url, log, application)
    watched = psutil.Process(process.pid)
    peak = 0
    launched = time.perf_counter()
    started: float | None = None
    try:
        while await stored(conn) < expected:
            if started is None and await conn.fetchval(
                "SELECT count(*) FROM kinesis_leases WHERE application = $1 AND owner IS NOT NULL", application
            ):
                started = time.perf_counter()
            peak = max(peak, watched.memory_info().rss)
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await conn.close()
    return expected / (finished - (started or launched)), expected / (finished - launched), peak / 1e6


async def freshness(settings: Settings, url: str, rate: int, seconds: int, log: Path) -> dict[str, float]:
    """On a stream of its own, read from TRIM_HORIZON: every event put is one the consumer will read, with
    no race between the first events and the shards' positioning."""
    async with kinesis_client(settings) as client:
        await ensure_stream(client, settings.stream_name, SHARDS)
    conn = await asyncpg.connect(url)
    await conn.execute(EMPTY_TABLES)
    process = start_consumer(settings, url, log, "bench-freshness")

    async def leases_held() -> bool:
        owned = await conn.fetchval(
            "SELECT count(*) FROM kinesis_leases WHERE application = 'bench-freshness' AND owner IS NOT NULL"
        )
        return int(owned) == SHARDS

    await until(leases_held, deadline_s=60, what="the consumer's leases")

    async def produce() -> None:
        tick = 0.1
        async with kinesis_client(settings) as client:
            next_at = time.monotonic()
            for step in range(int(seconds / tick)):
                now = datetime.now(UTC)
                await client.put_records(
                    StreamName=settings.stream_name,
                    Records=[
                        {"Data": body(step * 1000 + i, now), "PartitionKey": f"u{step}-{i}"}
                        for i in range(int(rate * tick))
                    ],
                )
                next_at += tick
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    expected = int(rate * 0.1) * int(seconds / 0.1)

    async def all_stored() -> bool:
        return await stored(conn) >= expected

    producer = asyncio.create_task(produce())
    try:
        await until(all_stored, deadline_s=seconds + 60, what=f"{expected} rows")
        # Visible = committed: the commit timestamp of the row's transaction (track_commit_timestamp is on).
        rows = await conn.fetch(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at)::float AS s FROM fraud_predictions"
        )
        delays = sorted(r["s"] for r in rows)
    finally:
        await producer
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await conn.close()
    return {
        "events": len(delays),
        "p50_s": round(delays[len(delays) // 2], 3),
        "p99_s": round(delays[int(len(delays) * 0.99)], 3),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def run(records: int, rate: int, seconds: int, rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-consumer-"))
    pg = EmbeddedPostgres(work / "pg", durable=True)
    kinesis = MotoKinesis(log_dir=work)
    pg.start()
    kinesis.start()
    try:
        conn = await asyncpg.connect(pg.url())
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")  # for freshness: when rows became visible
        await conn.close()
        pg.stop()
        pg.start()
        conn = await asyncpg.connect(pg.url())
        await migrate(conn)
        await conn.close()
        settings = Settings(AWS_ENDPOINT_URL_KINESIS=kinesis.endpoint_url, FRAUDFLOW_STREAM="bench", _env_file=None)
        async with kinesis_client(settings) as client:
            await ensure_stream(client, "bench", SHARDS)
        await put(settings, records)
        measured = []
        for round_ in range(rounds):
            ceiling = await plain_loop(settings, records)
            # A new application name each round: its leases start again from TRIM_HORIZON.
            ours, with_start_up, rss_mb = await consume_all(
                settings, pg.url(), records, work / "consumer.log", f"bench-throughput-{round_}"
            )
            measured.append((ceiling, ours, with_start_up, rss_mb))
        fresh_stream = settings.model_copy(update={"stream_name": "bench-freshness"})
        fresh = await freshness(fresh_stream, pg.url(), rate, seconds, work / "consumer.log")
    finally:
        kinesis.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "shards": SHARDS,
        "records": records,
        "rounds": [
            {
                "plain_getrecords_per_s": round(ceiling),
                "consumer_rows_per_s": round(ours),
                "consumer_rows_per_s_with_start_up": round(with_start_up),
                "ratio": round(ours / ceiling, 2),
            }
            for ceiling, ours, with_start_up, _ in measured
        ],
        "plain_getrecords_per_s": round(median([m[0] for m in measured])),
        "consumer_rows_per_s": round(median([m[1] for m in measured])),
        "ratio": round(median([m[1] / m[0] for m in measured]), 2),
        "peak_rss_mb": round(max(m[3] for m in measured), 1),
        "freshness": {"rate_per_s": rate, "seconds": seconds, **fresh},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Enough for two full 10,000-record pages per shard: with fewer, one page per shard is read, converted and
    # flushed with nothing to overlap it, and the figure measures the pipeline filling, not its throughput.
    parser.add_argument("--records", type=int, default=160_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the plain loop and the consumer")
    args = parser.parse_args()
    f = asyncio.run(run(args.records, args.rate, args.seconds, args.rounds))
    goals = {
        "consumer >= 0.8x plain GetRecords": f["ratio"] >= 0.8,
        "p99 freshness <= 1 s at 1,000 events/s": f["freshness"]["p99_s"] <= 1.0,
        "RSS <= 200 MB with 8 shards": f["peak_rss_mb"] <= 200,
    }
    rounds = [
        f"round {i + 1}: plain GetRecords loop {r['plain_getrecords_per_s']} records/s; consumer into PostgreSQL "
        f"{r['consumer_rows_per_s']} rows/s from its first lease (ratio {r['ratio']}), "
        f"{r['consumer_rows_per_s_with_start_up']} rows/s counting the process start-up"
        for i, r in enumerate(f["rounds"])
    ]
    summary = [
        *rounds,
        f"median of {len(f['rounds'])} rounds: plain loop {f['plain_getrecords_per_s']} records/s, consumer "
        f"{f['consumer_rows_per_s']} rows/s; ratio {f['ratio']}",
        f"freshness at {f['freshness']['rate_per_s']}/s: p50 {f['freshness']['p50_s']} s, "
        f"p99 {f['freshness']['p99_s']} s",
        f"consumer peak RSS: {f['peak_rss_mb']} MB",
    ] + [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("consumer", {**f, "goals": goals}, summary)


if __name__ == "__main__":
    main()
