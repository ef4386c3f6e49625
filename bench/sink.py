"""Sink throughput: the exactly-once flush vs plain COPY (the ceiling) vs asyncpg executemany INSERT.

Same rows, same batches (the consumer's default 2,000 rows), each batch one transaction, on the embedded
PostgreSQL with fsync on. Goals (issue 5): exactly-once >= 0.5x plain COPY and >= 3x executemany.
The consumer stages `features` and `sequence_number` as text for PostgreSQL to convert (consumers/processor/
rows.py); the two baselines write straight into the table, so they send the columns' own types.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.report import publish
from consumers.leases.table import Lease, LeaseTable, NewShard
from consumers.processor.rows import AS_TEXT, COLUMNS, to_row
from consumers.processor.sink import PostgresSink, ShardBuffer, create_staging
from consumers.retrieval.fetcher import Record
from fraudflow.data.synthetic import generate
from fraudflow.db.migrate import migrate
from fraudflow.events import encode_event, sample_event
from fraudflow.local.postgres import EmbeddedPostgres

SHARDS = ("shardId-000000000000", "shardId-000000000001")
SHARD = SHARDS[0]
_SHARD_COLUMN = COLUMNS.index("shard_id")


def rows(count: int) -> list[tuple[Any, ...]]:
    features = generate(count, seed=3).features
    out = []
    for i in range(count):
        body = sample_event(
            timestamp="2026-01-01T00:00:00Z",
            received_at="2026-01-01T00:00:01Z",
            user_id=f"u{i % 5000}",
            source="bench",
            fraud_proba=0.01,
            anomaly_score=0.3,
            model_version="bench",
            amount=float(features[i, -1]),
            features=features[i],
            device_info={"device_type": "mobile"},
            geo={"country": "fr", "city": "Paris", "latitude": 48.8, "longitude": 2.3},
        )
        row = to_row(Record(str(i + 1), 0, "k", encode_event(body), None), SHARD)
        assert isinstance(row, tuple)
        out.append(row)
    return out


# The consumer's text-staged columns back in their own types, for the baselines that write to the table.
_OWN_TYPE = {"features": lambda text: orjson.loads("[" + text[1:-1] + "]"), "sequence_number": Decimal}
assert set(_OWN_TYPE) == set(AS_TEXT)


def typed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A consumer row with its text-staged columns back in their own types."""
    return tuple(
        _OWN_TYPE[name](value) if name in _OWN_TYPE else value for name, value in zip(COLUMNS, row, strict=True)
    )


async def timed(pool: asyncpg.Pool, batches: list[list[tuple[Any, ...]]], write: Any) -> float:
    await pool.execute("TRUNCATE fraud_predictions")
    started = time.perf_counter()
    for number, batch in enumerate(batches):
        await write(batch, number)
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def on_shard(batch: list[tuple[Any, ...]], shard: str) -> list[tuple[Any, ...]]:
    """The same rows as read from another shard (each shard's flushes update that shard's aggregate rows)."""
    return [(*row[:_SHARD_COLUMN], shard, *row[_SHARD_COLUMN + 1 :]) for row in batch]


class SinkBench:
    """An embedded PostgreSQL (fsync on), migrated, with a pool, a held lease per shard and the consumer's sink:
    what every sink comparison writes through. `write_exactly_once` is the consumer's flush of one batch."""

    def __init__(self, shards: int = 1) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-sink-"))
        self.server = EmbeddedPostgres(self.work / "pg", durable=True)
        self.shards = SHARDS[:shards]

    async def __aenter__(self) -> SinkBench:
        self.server.start()
        conn = await asyncpg.connect(self.server.url())
        await migrate(conn)
        await conn.close()
        self.pool = await asyncpg.create_pool(
            self.server.url(), min_size=1, max_size=len(self.shards) + 1, init=create_staging
        )
        table = LeaseTable(self.pool, "bench", "bench")
        await table.create_missing([NewShard(shard, [], "0", "1", "TRIM_HORIZON") for shard in self.shards])
        self.leases: dict[str, Lease] = {}
        for shard in self.shards:
            lease = await table.take(shard, "bench", 0)
            assert lease is not None
            self.leases[shard] = lease
        self.sink = PostgresSink(self.pool, table)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    async def write_exactly_once(self, batch: list[tuple[Any, ...]], checkpoint: int, shard: str = SHARD) -> None:
        buffer = ShardBuffer(shard)
        buffer.rows.extend(batch)
        self.leases[shard] = (await self.sink.flush(self.leases[shard], buffer, str(checkpoint))).lease


async def run(total: int, batch_size: int, repeats: int) -> dict[str, Any]:
    async with SinkBench() as bench:
        pool = bench.pool
        data = rows(total)
        batches = [data[i : i + batch_size] for i in range(0, total, batch_size)]
        typed_batches = [[typed(row) for row in batch] for batch in batches]
        columns = list(COLUMNS)
        placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
        quoted = ", ".join(f'"{c}"' for c in columns)
        insert = f"INSERT INTO fraud_predictions ({quoted}) VALUES ({placeholders})"

        async def exactly_once(batch: list[tuple[Any, ...]], number: int) -> None:
            await bench.write_exactly_once(batch, (number + 1) * batch_size)

        async def plain_copy(batch: list[tuple[Any, ...]], number: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("fraud_predictions", records=batch, columns=columns)

        async def executemany(batch: list[tuple[Any, ...]], number: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(insert, batch)

        results: dict[str, list[float]] = {"exactly_once": [], "plain_copy": [], "executemany": []}
        for _ in range(repeats):  # interleaved, so drift on a noisy machine hits all three alike
            for name, write, data_batches in (
                ("plain_copy", plain_copy, typed_batches),
                ("exactly_once", exactly_once, batches),
                ("executemany", executemany, typed_batches),
            ):
                results[name].append(await timed(pool, data_batches, write))
    best = {name: max(values) for name, values in results.items()}
    return {
        "rows": total,
        "batch_rows": batch_size,
        "rows_per_s": {k: round(v) for k, v in best.items()},
        "runs": {k: [round(v) for v in vs] for k, vs in results.items()},
        "ratio_vs_plain_copy": round(best["exactly_once"] / best["plain_copy"], 2),
        "ratio_vs_executemany": round(best["exactly_once"] / best["executemany"], 2),
        "checkpoint": str(Decimal(total)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows, args.batch, args.repeats))
    r = figures["rows_per_s"]
    goals = {
        "exactly_once >= 0.5x plain COPY": figures["ratio_vs_plain_copy"] >= 0.5,
        "exactly_once >= 3x executemany": figures["ratio_vs_executemany"] >= 3,
    }
    summary = [f"{name:<14}{value:>10} rows/s" for name, value in r.items()]
    summary.append(
        f"exactly-once / plain COPY = {figures['ratio_vs_plain_copy']}, "
        f"/ executemany = {figures['ratio_vs_executemany']}"
    )
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("sink", {**figures, "goals": goals}, summary)


if __name__ == "__main__":
    main()
