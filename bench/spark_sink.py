"""The reference design's sink side by side with ours: Spark's JDBC append vs the exactly-once flush.

Same rows, same `fraud_predictions` (with its indexes), same embedded PostgreSQL (fsync on), interleaved runs.
The reference design's Glue job wrote each micro-batch with `df.write.jdbc(mode="append")`; here PySpark
(local[2], the machine's two cores, as the consumer has) appends the whole set through PostgreSQL's JDBC
driver (Debian's libpostgresql-jdbc-java) on two connections, one per partition, Spark's start-up and the
DataFrame's creation left out of its time. The exactly-once flush writes the same rows in the consumer's
2,000-row transactions, with the aggregates and the checkpoint, as in production: from one shard, and from
two shards at once (two connections, as Spark's two partitions; the consumer flushes its shards
concurrently). Plain COPY is measured too, on one and two connections, as the ceiling of any sink.

Goal (consumer hardening issue): exactly-once >= 2x the Spark JDBC append. Needs the `spark` extra
(`pip install -e '.[spark]'`), Java and the JDBC driver; without them it says which is missing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.report import publish
from bench.sink import SHARDS, SinkBench, on_shard, rows, typed
from consumers.processor.rows import COLUMNS

JDBC_JARS = ("/usr/share/java/postgresql.jar",)


def missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None:
        return "java is not installed (apt-get install default-jre-headless)"
    if not any(Path(jar).exists() for jar in JDBC_JARS):
        return "PostgreSQL's JDBC driver is not installed (apt-get install libpostgresql-jdbc-java)"
    return None


class SparkAppend:
    """A local Spark session and the rows as a DataFrame, ready to append to fraud_predictions."""

    def __init__(self, url: str, data: list[tuple[Any, ...]]) -> None:
        from pyspark.sql import SparkSession
        from pyspark.sql import types as t

        jar = next(jar for jar in JDBC_JARS if Path(jar).exists())
        self.spark = (
            SparkSession.builder.master("local[2]")
            .appName("fraudflow-reference-sink")
            .config("spark.jars", jar)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")  # loopback only: nothing of a benchmark leaves the machine
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        kinds = {
            datetime: t.TimestampType(),
            str: t.StringType(),
            int: t.IntegerType(),
            float: t.DoubleType(),
        }
        first = typed(data[0])
        fields = []
        for name, value in zip(COLUMNS, first, strict=True):
            if name == "features":
                kind: Any = t.ArrayType(t.FloatType())
            elif name == "sequence_number":
                kind = t.DecimalType(38, 0)
            elif name == "event_id":
                kind = t.StringType()
            else:
                kind = kinds.get(type(value), t.StringType())
            fields.append(t.StructField(name, kind, True))
        prepared = [
            tuple(str(v) if name == "event_id" else v for name, v in zip(COLUMNS, typed(row), strict=True))
            for row in data
        ]
        self.frame = self.spark.createDataFrame(prepared, t.StructType(fields)).cache()
        self.frame.count()
        # stringtype=unspecified lets PostgreSQL cast the event id's text to uuid, as a Glue job's would.
        host_port_db = url.split("@", 1)[1]
        user = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[0]
        self.jdbc = f"jdbc:postgresql://{host_port_db}?stringtype=unspecified"
        self.properties = {"user": user, "driver": "org.postgresql.Driver"}

    def append(self) -> None:
        self.frame.write.jdbc(self.jdbc, "fraud_predictions", mode="append", properties=self.properties)

    def stop(self) -> None:
        self.spark.stop()


async def run(total: int, batch_size: int, repeats: int) -> dict[str, Any]:
    spark: SparkAppend | None = None
    async with SinkBench(shards=2) as bench:
        pool = bench.pool
        data = rows(total)
        batches = [data[i : i + batch_size] for i in range(0, total, batch_size)]
        typed_rows = [typed(row) for row in data]
        started = time.perf_counter()
        spark = await asyncio.to_thread(SparkAppend, bench.server.url(), data)
        spark_start_s = time.perf_counter() - started

        async def reset() -> None:
            await pool.execute(
                "TRUNCATE fraud_predictions, fraud_stats_15m, fraud_histograms_15m, fraud_dimensions_15m, "
                "fraud_places_15m"
            )
            await pool.execute("CHECKPOINT")

        async def exactly_once() -> None:
            for number, batch in enumerate(batches):
                await bench.write_exactly_once(batch, (number + 1) * batch_size)

        async def one_shard(shard: str, its_batches: list[list[tuple[Any, ...]]]) -> None:
            for number, batch in enumerate(its_batches):
                await bench.write_exactly_once(batch, (number + 1) * batch_size, shard)

        halves = [[on_shard(b, shard) for b in batches[i::2]] for i, shard in enumerate(SHARDS)]

        async def exactly_once_2_shards() -> None:
            await asyncio.gather(*(one_shard(shard, half) for shard, half in zip(SHARDS, halves, strict=True)))

        async def copy_batches(starts: range) -> None:
            for start in starts:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.copy_records_to_table(
                        "fraud_predictions", records=typed_rows[start : start + batch_size], columns=list(COLUMNS)
                    )

        async def plain_copy() -> None:
            await copy_batches(range(0, total, batch_size))

        async def plain_copy_2_connections() -> None:
            await asyncio.gather(
                copy_batches(range(0, total, 2 * batch_size)), copy_batches(range(batch_size, total, 2 * batch_size))
            )

        async def spark_jdbc() -> None:
            assert spark is not None
            await asyncio.to_thread(spark.append)

        writers = {
            "spark_jdbc": spark_jdbc,
            "exactly_once": exactly_once,
            "exactly_once_2_shards": exactly_once_2_shards,
            "plain_copy": plain_copy,
            "plain_copy_2_connections": plain_copy_2_connections,
        }
        results: dict[str, list[float]] = {name: [] for name in writers}
        try:
            for _ in range(repeats):  # interleaved, so drift on a noisy machine hits all alike
                for name, write in writers.items():
                    await reset()
                    begin = time.perf_counter()
                    await write()
                    elapsed = time.perf_counter() - begin
                    stored = await pool.fetchval("SELECT count(*) FROM fraud_predictions")
                    assert stored == total, (name, stored)
                    results[name].append(total / elapsed)
        finally:
            spark.stop()
    best = {name: max(values) for name, values in results.items()}
    return {
        "rows": total,
        "batch_rows": batch_size,
        "spark_start_s": round(spark_start_s, 1),
        "rows_per_s": {k: round(v) for k, v in best.items()},
        "runs": {k: [round(v) for v in vs] for k, vs in results.items()},
        "ratio_vs_spark_jdbc": round(best["exactly_once_2_shards"] / best["spark_jdbc"], 2),
        "one_shard_vs_spark_jdbc": round(best["exactly_once"] / best["spark_jdbc"], 2),
        "plain_copy_vs_spark_jdbc": round(best["plain_copy_2_connections"] / best["spark_jdbc"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if (reason := missing()) is not None:
        print(f"skipped: {reason}")
        return
    os.environ.setdefault("PYSPARK_PYTHON", shutil.which("python3") or "python3")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    figures = asyncio.run(run(args.rows, args.batch, args.repeats))
    r = figures["rows_per_s"]
    goals = {"exactly_once >= 2x Spark JDBC append": figures["ratio_vs_spark_jdbc"] >= 2}
    summary = [f"{name:<14}{value:>10} rows/s" for name, value in r.items()]
    summary.append(
        f"exactly-once on 2 shards / Spark JDBC (2 partitions) = {figures['ratio_vs_spark_jdbc']} "
        f"(one shard: {figures['one_shard_vs_spark_jdbc']}); the ceiling, plain COPY on 2 connections / Spark "
        f"JDBC = {figures['plain_copy_vs_spark_jdbc']} (Spark started in {figures['spark_start_s']} s, not counted)"
    )
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("spark_sink", {**figures, "goals": goals}, summary)


if __name__ == "__main__":
    main()
