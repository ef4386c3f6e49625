"""Embedded services: real PostgreSQL and real Kinesis round trips, and clean stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiobotocore.session
import asyncpg
import psutil
import pytest
from redis.asyncio import Redis

from fraudflow.aws import client_config, kinesis_client
from fraudflow.config import Settings
from fraudflow.local.kinesis import KinesisServer, MotoKinesis
from fraudflow.local.process import ServiceError
from fraudflow.local.services import EmbeddedServices, KinesisBackend
from fraudflow.net import free_port
from fraudflow.streams import ensure_stream

if TYPE_CHECKING:
    from types_aiobotocore_kinesis.literals import ShardIteratorTypeType
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_put_and_get_records_round_trip(settings: Settings) -> None:
    async with kinesis_client(settings) as client:
        put = await client.put_records(
            StreamName=settings.stream_name,
            Records=[{"Data": f"event-{i}".encode(), "PartitionKey": f"user-{i}"} for i in range(20)],
        )
        assert put["FailedRecordCount"] == 0
        shards = (await client.list_shards(StreamName=settings.stream_name))["Shards"]
        assert len(shards) == settings.shards
        received: list[bytes] = []
        arrivals: list[datetime] = []
        for shard in shards:
            iterator = (
                await client.get_shard_iterator(
                    StreamName=settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            for record in (await client.get_records(ShardIterator=iterator))["Records"]:
                received.append(record["Data"])
                arrivals.append(record["ApproximateArrivalTimestamp"])
    assert sorted(received) == sorted(f"event-{i}".encode() for i in range(20))
    # Arrival times come through our fast parser: aware, in UTC, and now.
    assert all(arrived.tzinfo is UTC for arrived in arrivals)
    assert all(abs(datetime.now(UTC) - arrived) < timedelta(minutes=1) for arrived in arrivals)


async def test_database_serves_a_real_connection(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert (await conn.fetchval("SHOW server_version")).split(".")[0].isdigit()
        assert await conn.fetchval("SELECT count(*) FROM fraud_predictions") == 0
    finally:
        await conn.close()


async def test_stack_starts_persists_and_stops_without_leftovers(tmp_path: Path) -> None:
    settings = Settings(FRAUDFLOW_STREAM="stack-stream", FRAUDFLOW_SHARDS=3, _env_file=None)
    before = _descendants()
    for round_ in range(2):  # the second start reuses the data directory
        stack = EmbeddedServices(tmp_path, durable=False)
        await stack.start(settings)
        conn = await asyncpg.connect(stack.database_url)
        if round_ == 0:
            await conn.execute("CREATE TABLE kept (x int)")
        else:
            assert await conn.fetchval("SELECT to_regclass('kept') IS NOT NULL")
        await conn.close()
        async with kinesis_client(
            settings.model_copy(update={"kinesis_endpoint_url": stack.kinesis.endpoint_url})
        ) as client:
            shards = (await client.list_shards(StreamName="stack-stream"))["Shards"]
        assert len(shards) == 3
        store = Redis.from_url(stack.redis.url)
        assert await store.ping()
        await store.aclose()
        await stack.stop()
        assert stack.postgres.running_pid() is None
    assert _descendants() <= before


async def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port}"):
            EmbeddedServices(tmp_path, kinesis_port=port)


def test_services_command_prints_env_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "FRAUDFLOW_DATA_DIR": str(tmp_path / "data"), "FRAUDFLOW_SHARDS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudflow.cli",
            "services",
            "--pg-port",
            str(free_port()),
            "--kinesis-port",
            str(free_port()),
            "--redis-port",
            str(free_port()),
            "--kinesis",
            KinesisBackend.MOTO.value,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(line.startswith("export FRAUDFLOW_REDIS_URL") for line in lines):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    exported = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
    assert exported["DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:")
    assert exported["AWS_ENDPOINT_URL_KINESIS"].startswith("http://127.0.0.1:")
    assert exported["FRAUDFLOW_REDIS_URL"].startswith("redis://127.0.0.1:")
    children = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
    assert children, "services should run PostgreSQL and the Kinesis server as children"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists(), "PostgreSQL is still running"


@pytest.mark.parametrize("shard_count", [1])
async def test_concurrent_puts_on_one_shard_are_all_kept(settings: Settings) -> None:
    """moto's put_record is not thread-safe; the embedded server must serialise requests so none is lost."""
    import asyncio

    async def put_batch(batch: int) -> None:
        async with kinesis_client(settings, client_config(connect_timeout=15)) as client:  # 16 at once, busy server
            records: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": f"{batch}-{i}".encode(), "PartitionKey": f"k{i}"} for i in range(500)
            ]
            assert (await client.put_records(StreamName=settings.stream_name, Records=records))[
                "FailedRecordCount"
            ] == 0

    await asyncio.gather(*(put_batch(b) for b in range(16)))
    from tests.streams import read_stream

    data = [r["Data"] for r in await read_stream(settings)]
    assert len(data) == len(set(data)) == 8000


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
async def test_stream_create_command_is_idempotent(kinesis_server: KinesisServer) -> None:
    # docker compose runs it at every start, so the second run must succeed and change nothing.
    stream = f"cli-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_KINESIS": kinesis_server.endpoint_url,
        "AWS_REGION": "us-east-1",
        "FRAUDFLOW_STREAM": stream,
    }
    for _ in range(2):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "fraudflow.cli", "stream", "create", "--shards", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert f"stream {stream} is ACTIVE" in result.stdout
    settings = Settings(AWS_ENDPOINT_URL_KINESIS=kinesis_server.endpoint_url, _env_file=None)
    async with kinesis_client(settings) as client:
        shards = await client.list_shards(StreamName=stream)
    assert len(shards["Shards"]) == 3


def test_stream_create_reports_an_unreachable_endpoint_in_one_line() -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{free_port()}", "AWS_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "stream", "create", "--wait", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot create stream")
    assert "Traceback" not in result.stderr


def test_stream_create_waits_for_an_emulator_that_starts_later(tmp_path: Path) -> None:
    # docker compose starts the emulator and this one-shot together; the command must outwait the emulator.
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudflow.cli", "stream", "create", "--wait", "60"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = MotoKinesis(port=port, log_dir=tmp_path)
    try:
        server.start()
        out, err = process.communicate(timeout=90)
    finally:
        server.stop()
    assert process.returncode == 0, err
    assert "is ACTIVE" in out


async def test_embedded_moto_answers_put_records_and_keeps_no_metrics(moto_server: KinesisServer) -> None:
    settings = Settings(AWS_ENDPOINT_URL_KINESIS=moto_server.endpoint_url, FRAUDFLOW_STREAM="metrics", _env_file=None)
    async with kinesis_client(settings) as client:
        await ensure_stream(client, "metrics", 2)
        put = await client.put_records(
            StreamName="metrics", Records=[{"Data": b"x", "PartitionKey": key} for key in ("a", "b", "a")]
        )
        assert put["FailedRecordCount"] == 0
        assert [r["SequenceNumber"] for r in put["Records"] if r["ShardId"] == put["Records"][0]["ShardId"]] == [
            "1",
            "2",
        ]
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            await client.put_records(StreamName="missing", Records=[{"Data": b"x", "PartitionKey": "a"}])
    # moto would keep two CloudWatch data points per PutRecords for the life of the server.
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "cloudwatch",
        endpoint_url=moto_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    ) as cloudwatch:
        assert (await cloudwatch.list_metrics(Namespace="AWS/Kinesis"))["Metrics"] == []


@pytest.mark.parametrize("kinesis_server", ["moto", "kinesis-local"], indirect=True)
@pytest.mark.parametrize("shard_count", [1])
async def test_get_records_pages_and_positions(settings: Settings) -> None:
    # The same reads on both emulators (moto's shard look-ups are replaced in fraudflow.local.moto_server).
    async with kinesis_client(settings) as client:
        stream = settings.stream_name
        put = await client.put_records(
            StreamName=stream,
            Records=[{"Data": f"r{i}".encode(), "PartitionKey": "k"} for i in range(30)],
        )
        sequence = [r["SequenceNumber"] for r in put["Records"]]
        (shard,) = (await client.list_shards(StreamName=stream))["Shards"]

        async def iterator(kind: ShardIteratorTypeType, **position: Any) -> str:
            answer = await client.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType=kind, **position
            )
            return str(answer["ShardIterator"])

        pages, cursor = [], await iterator("TRIM_HORIZON")
        for _ in range(6):
            page = await client.get_records(ShardIterator=cursor, Limit=7)
            pages.append([r["Data"] for r in page["Records"]])
            cursor = page["NextShardIterator"]
        assert [len(p) for p in pages[:5]] == [7, 7, 7, 7, 2]
        assert [d for p in pages for d in p] == [f"r{i}".encode() for i in range(30)]
        assert page["MillisBehindLatest"] == 0

        after = await client.get_records(
            ShardIterator=await iterator("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=sequence[9]), Limit=3
        )
        assert [r["Data"] for r in after["Records"]] == [b"r10", b"r11", b"r12"]
        at = await client.get_records(
            ShardIterator=await iterator("AT_SEQUENCE_NUMBER", StartingSequenceNumber=sequence[29])
        )
        assert [r["Data"] for r in at["Records"]] == [b"r29"]

        latest = await iterator("LATEST")
        assert (await client.get_records(ShardIterator=latest))["Records"] == []
        await client.put_record(StreamName=stream, Data=b"new", PartitionKey="k")
        assert [r["Data"] for r in (await client.get_records(ShardIterator=latest))["Records"]] == [b"new"]
