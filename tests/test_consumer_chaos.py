"""Workers as real processes: SIGKILL mid-flight, restarts, a PostgreSQL crash, and nothing lost or doubled.

Short by default (CI); set FRAUDFLOW_CHAOS_SECONDS for a longer soak.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fraudflow.config import Settings
from fraudflow.db.migrate import migrate
from fraudflow.local.postgres import EmbeddedPostgres
from tests.consumer_helpers import aggregated, put_events, wait_until

pytestmark = pytest.mark.slow

CHAOS_SECONDS = float(os.environ.get("FRAUDFLOW_CHAOS_SECONDS", "12"))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shard_count() -> int:
    return 4


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A migrated server of this test's own: it gets crashed and restarted."""
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(server.url())
    await migrate(conn)
    await conn.close()
    yield server
    await asyncio.to_thread(server.stop, "immediate")


class Worker:
    def __init__(self, name: str, settings: Settings, url: str, log_dir: Path) -> None:
        self.name, self.settings, self.url, self.log_dir = name, settings, url, log_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "FRAUDFLOW_STREAM": self.settings.stream_name,
            "AWS_ENDPOINT_URL_KINESIS": self.settings.kinesis_endpoint_url or "",
            "AWS_REGION": "us-east-1",
            "FRAUDFLOW_LOG_FORMAT": "json",
        }
        with (self.log_dir / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fraudflow.cli", "consume", "--worker-id", self.name, "--failover", "2"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


async def test_kills_restarts_and_a_database_crash_lose_and_double_nothing(
    settings: Settings, own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = own_postgres.url()
    workers = [Worker(f"w{i}", settings, url, tmp_path) for i in range(3)]
    for w in workers:
        w.start()
    put: list[str] = []
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    end = loop.time() + CHAOS_SECONDS
    crashed_database = False
    try:
        while loop.time() < end:
            put += await put_events(settings, 120, review_every=4)
            victim = rng.choice(workers)
            victim.kill()  # no flush, no release: its leases must expire by counter
            await asyncio.sleep(0.3)
            victim.start()
            if not crashed_database and loop.time() > end - CHAOS_SECONDS / 2:
                crashed_database = True
                await asyncio.to_thread(own_postgres.stop, "immediate")
                put += await put_events(settings, 120, review_every=4)  # Kinesis keeps taking events meanwhile
                await asyncio.sleep(1.0)
                await asyncio.to_thread(own_postgres.start)
            await asyncio.sleep(0.5)
        conn = await asyncpg.connect(url)
        try:

            async def all_stored() -> bool:
                return int(await conn.fetchval("SELECT count(*) FROM fraud_predictions")) >= len(put)

            try:
                await wait_until(all_stored, deadline_s=90, what=f"{len(put)} rows")
            except AssertionError as error:
                raise AssertionError(f"{error}; {await _diagnosis(conn, put)}") from None
            rows = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d, count(*) FILTER "
                "(WHERE event_id = ANY($1::uuid[])) AS ours FROM fraud_predictions",
                [uuid.UUID(i) for i in put],
            )
            counted = await aggregated(conn)
            cases = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM fraud_predictions WHERE decision = 'review') AS reviews,
                          (SELECT count(*) FROM case_events) AS in_cases,
                          (SELECT coalesce(sum(transactions), 0) FROM cases) AS counted,
                          (SELECT count(*) FROM cases) AS cases,
                          (SELECT count(DISTINCT user_id) FROM cases) AS users"""
            )
        finally:
            await conn.close()
    finally:
        codes = [w.stop() for w in workers]
    assert crashed_database
    assert rows is not None
    assert (rows["n"], rows["d"], rows["ours"]) == (len(put), len(put), len(put))
    assert set(counted.values()) == {len(put)}, counted  # the aggregates are exactly-once too
    assert cases is not None
    # Every review decision in exactly one case, counted once; one case per user (none was closed).
    assert cases["reviews"] == len(put) // 4
    assert (cases["in_cases"], cases["counted"]) == (cases["reviews"], cases["reviews"]), dict(cases)
    assert cases["cases"] == cases["users"]
    assert codes == [0, 0, 0], [(w.log_dir / f"{w.name}.log").read_text()[-3000:] for w in workers]


async def _diagnosis(conn: asyncpg.Connection, put: list[str]) -> str:
    """What a timed-out run had stored, per shard, against the leases and the dead letters."""
    stored = await conn.fetch(
        "SELECT shard_id, count(*) AS n, max(sequence_number) AS last FROM fraud_predictions GROUP BY 1"
    )
    missing = await conn.fetchval(
        "SELECT count(*) FROM unnest($1::uuid[]) AS e(id) WHERE NOT EXISTS "
        "(SELECT 1 FROM fraud_predictions p WHERE p.event_id = e.id)",
        [uuid.UUID(i) for i in put],
    )
    leases = await conn.fetch("SELECT shard_id, owner, epoch, checkpoint, failures, last_error FROM kinesis_leases")
    rejected = await conn.fetch("SELECT reason, count(*) AS n FROM rejected_records GROUP BY 1")
    return (
        f"missing={missing} stored={[dict(r) for r in stored]} leases={[dict(r) for r in leases]} "
        f"rejected={[dict(r) for r in rejected]}"
    )
