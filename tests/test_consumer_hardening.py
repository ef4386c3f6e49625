"""Consumer findings from adversarial runs, each reproduced: failures visible, renewal racing a lease loss, a
worker stopped while it starts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from consumers.config import ConsumerConfig
from consumers.health import serve_health_and_metrics
from consumers.leases.coordinator import LeaseCoordinator
from consumers.leases.table import LeaseTable, NewShard
from consumers.processor.rows import COLUMNS, to_row
from consumers.processor.sink import STAGING, create_staging
from consumers.retrieval.fetcher import Record
from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.events import encode_event
from fraudflow.net import free_port
from fraudflow.streams import ensure_stream, stream_status
from tests.consumer_helpers import FAST, event, pool_for, put_events, stored, wait_until, worker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shard_count() -> int:
    return 1


def _cli_env(settings: Settings) -> dict[str, str]:
    assert settings.static_database_url
    return {
        **os.environ,
        "DATABASE_URL": settings.static_database_url,
        "FRAUDFLOW_STREAM": settings.stream_name,
        "AWS_ENDPOINT_URL_KINESIS": settings.kinesis_endpoint_url or "",
        "AWS_REGION": "us-east-1",
        "FRAUDFLOW_LOG_FORMAT": "json",
    }


async def test_a_failing_shard_is_counted_and_shown_by_status(settings: Settings, db: asyncpg.Connection) -> None:
    await put_events(settings, 5)
    async with worker(settings, "w1") as scheduler:
        await wait_until(lambda: _stored(db, 5), what="5 rows")
        async with kinesis_client(settings) as client:
            await client.delete_stream(StreamName=settings.stream_name)

        async def failed() -> bool:
            return int(await db.fetchval("SELECT max(failures) FROM kinesis_leases")) >= 1

        await wait_until(failed, what="the failure counted on the lease")
        counted = scheduler.metrics.registry.get_sample_value(
            "fraudflow_consumer_shard_failures_total", {"shard": "shardId-000000000000"}
        )
        assert counted is not None
        assert counted >= 1
    assert [r["owner"] for r in await db.fetch("SELECT owner FROM kinesis_leases")] == [None]  # released on stop
    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fraudflow.cli", "consume", "status"],
        env=_cli_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "failures" in status.stdout
    assert "last failure" in status.stdout
    assert "ResourceNotFoundException" in status.stdout


async def _stored(db: asyncpg.Connection, n: int) -> bool:
    return (await stored(db))[0] >= n


async def test_renewal_survives_a_lease_forgotten_while_it_awaits(settings: Settings, db: asyncpg.Connection) -> None:
    pool = await pool_for(settings)
    try:
        table = LeaseTable(pool, "app", settings.stream_name)
        await table.create_missing([NewShard(f"shard-{n}", [], "0", "1", "TRIM_HORIZON") for n in (1, 2)])
        coordinator = LeaseCoordinator(table, "w1", ConsumerConfig())
        assert len(await coordinator.take(steal=False)) == 2
        renewing = asyncio.create_task(coordinator.renew())
        await asyncio.sleep(0)  # the renewal is now waiting on PostgreSQL for shard-1
        coordinator.forget("shard-1")  # as the scheduler does when a consumer finds its lease lost
        assert await renewing == []
        assert set(coordinator.held) == {"shard-2"}
        counters = {r["shard_id"]: r["lease_counter"] for r in await db.fetch("SELECT * FROM kinesis_leases")}
        assert counters["shard-2"] == 2  # taken, then renewed: the round went on after the forgotten lease
    finally:
        await pool.close()


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fraudflow.cli", "consume", "--worker-id", "w1"],
        env=_cli_env(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("after_s", [0.3, 0.9, 1.6])
async def test_sigterm_during_start_up_is_a_clean_stop(settings: Settings, after_s: float) -> None:
    """From the CLI's first instruction (the interpreter itself starts in about 0.13 s), through the imports
    (over a second) and the connections, to the first leases."""
    process = _start_worker(settings)
    await asyncio.sleep(after_s)  # the moment of the signal is what is tested, not a wait for a condition
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, output.decode()[-2000:]


async def test_a_worker_waits_for_postgres_at_start_up_and_stops_cleanly(settings: Settings) -> None:
    env = {**_cli_env(settings), "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing"}
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "fraudflow.cli", "consume"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert b"postgres unreachable at start-up, retrying" in line
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 1  # stopped before it could start: said in one line, no traceback
    assert output.decode().strip().splitlines()[-1].startswith("error: stopped while PostgreSQL was unreachable")
    assert b"Traceback" not in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_worker_waits_for_its_stream_at_start_up(settings: Settings, db: asyncpg.Connection) -> None:
    later = settings.model_copy(update={"stream_name": settings.stream_name + "-later"})
    async with worker(later, "w1") as scheduler:
        await wait_until(
            lambda: _async(
                scheduler.metrics.registry.get_sample_value(
                    "fraudflow_consumer_retries_total", {"reason": "shard sync"}
                )
                is not None
            ),
            what="a failed shard sync, retried",
        )
        async with kinesis_client(later) as client:
            await ensure_stream(client, later.stream_name, 1)
        await put_events(later, 3)
        await wait_until(lambda: _stored(db, 3), what="3 rows once the stream exists")


async def _async(value: bool) -> bool:
    return value


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_checkpoints_of_an_earlier_stream_of_the_same_name_are_not_trusted(
    settings: Settings, db: asyncpg.Connection
) -> None:
    await put_events(settings, 60)
    async with worker(settings, "w1"):
        await wait_until(lambda: _stored(db, 60), what="60 rows from the first stream")
    async with kinesis_client(settings) as client:
        await client.delete_stream(StreamName=settings.stream_name)

        async def gone() -> bool:
            return await stream_status(client, settings.stream_name) is None

        await wait_until(gone, what="the stream deleted")
        await ensure_stream(client, settings.stream_name, 1)
    await put_events(settings, 40)  # fewer than before: old checkpoints would point past all of them
    async with worker(settings, "w1"):
        await wait_until(lambda: _stored(db, 100), what="the new stream's 40 rows")
    identities = {r["stream_identity"] for r in await db.fetch("SELECT stream_identity FROM kinesis_leases")}
    assert len(identities) == 1
    assert None not in identities


async def _frozen_flush(url: str, shard_id: str, settings: dict[str, str]) -> asyncpg.Connection:
    """A session stopped inside a flush of `shard_id`, after its aggregate update (as a SIGSTOPped worker's):
    it holds that shard's current aggregate rows and stays idle in transaction."""
    conn = await asyncpg.connect(url, server_settings=settings)
    await create_staging(conn)
    await conn.execute("BEGIN")
    row = to_row(Record("1", 0, "k", encode_event(event()), None), shard_id)
    assert isinstance(row, tuple)
    await conn.copy_records_to_table(STAGING, records=[row], columns=list(COLUMNS))
    await conn.execute("SELECT fraudflow_add_to_rollups('fraudflow_staging'::regclass)")
    return conn


@pytest.mark.parametrize("shard_count", [2])
async def test_a_worker_frozen_in_a_flush_stops_neither_other_shards_nor_its_own_for_long(
    settings: Settings, db: asyncpg.Connection
) -> None:
    assert settings.static_database_url
    # Frozen with no session bounds at all: only the other shard can go on, and it must.
    frozen = await _frozen_flush(settings.static_database_url, "shardId-000000000000", {})
    ids = await put_events(settings, 200)
    async with worker(settings, "w1"):

        async def other_shard_stored() -> bool:
            n = await db.fetchval("SELECT count(*) FROM fraud_predictions WHERE shard_id = 'shardId-000000000001'")
            return int(n) > 0 and int(n) == await _on_shard(settings, "shardId-000000000001")

        await wait_until(other_shard_stored, what="the other shard's rows while a flush is frozen")
        await frozen.close()  # the frozen worker is gone: its shard goes on
        await wait_until(lambda: _stored(db, len(ids)), what="every row once the frozen session ended")
    # Frozen with the worker's session bounds: the server ends the transaction by itself.
    frozen = await _frozen_flush(settings.static_database_url, "shardId-000000000000", FAST.session_settings())

    async def ended() -> bool:
        n = await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", frozen.get_server_pid())
        return int(n) == 0

    await wait_until(ended, deadline_s=FAST.idle_in_transaction_timeout_s + 10, what="the idle transaction ended")
    frozen.terminate()


async def _on_shard(settings: Settings, shard_id: str) -> int:
    async with kinesis_client(settings) as client:
        iterator = (
            await client.get_shard_iterator(
                StreamName=settings.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        return len((await client.get_records(ShardIterator=iterator, Limit=10_000))["Records"])


async def test_a_commit_postgres_lost_is_read_again_not_skipped(settings: Settings, db: asyncpg.Connection) -> None:
    """What a crash without synchronous commit (or a promoted asynchronous replica) leaves: the last commits,
    rows and checkpoint together, are gone although the worker saw them succeed. Its next flush must not go on
    from its own memory (skipping those rows) but give the lease up, so the shard is read again from there."""
    first = await put_events(settings, 100)
    async with worker(settings, "w1"):
        await wait_until(lambda: _stored(db, 100), what="100 rows")
        async with db.transaction():
            await db.execute("DELETE FROM fraud_predictions WHERE sequence_number > 40")
            await db.execute("UPDATE kinesis_leases SET checkpoint = '40'")
        later = await put_events(settings, 20)
        await wait_until(lambda: _stored(db, 120), what="the lost rows read again, and the new ones")
    stored_ids = {str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM fraud_predictions")}
    assert stored_ids == set(first) | set(later)


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def _until_status(port: int, status: int, deadline_s: float) -> bool:
    """Poll /healthz from a thread of its own until it answers `status` (the event loop may be stuck)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _get(port, "/healthz")[0] == status:
            return True
        time.sleep(0.05)
    return False


async def test_healthz_fails_while_the_lease_loop_is_stuck(settings: Settings) -> None:
    """The health check must catch a worker whose loop no longer turns, not just a live metrics thread."""
    async with worker(settings, "w1") as scheduler:
        port = free_port()
        server = serve_health_and_metrics(
            scheduler.metrics.registry, "127.0.0.1", port, lambda: scheduler.last_round, stale_after_s=1.5
        )
        try:
            await wait_until(lambda: _async(_get(port, "/healthz")[0] == 200), what="healthy")
            saw_stalled: list[bool] = []
            probe = threading.Thread(target=lambda: saw_stalled.append(_until_status(port, 503, 6.0)))
            probe.start()
            # The fault itself: a computation that never yields, as a stuck loop would (not a synchronisation).
            end = time.monotonic() + 6.0
            while probe.is_alive() and time.monotonic() < end:
                time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is the point
            probe.join()
            assert saw_stalled == [True]
            await wait_until(lambda: _async(_get(port, "/healthz")[0] == 200), what="healthy again")
            status, body = _get(port, "/metrics")
            assert status == 200
            assert b"fraudflow_consumer_leases_held" in body
        finally:
            server.shutdown()
