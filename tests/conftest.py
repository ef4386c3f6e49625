"""Shared fixtures: real embedded PostgreSQL and real Kinesis emulators, never mocks.

Servers are session-scoped; each test that needs isolation gets a fresh database (cloned from a migrated
template, so it costs milliseconds) and a fresh stream.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.db.migrate import migrate
from fraudflow.local.kinesis import KinesisLocal, KinesisServer, MotoKinesis, kinesis_local_missing_reason
from fraudflow.local.postgres import EmbeddedPostgres
from fraudflow.local.redis import EmbeddedRedis
from fraudflow.local.services import create_database
from fraudflow.streams import ensure_stream
from tests.faultproxy import FaultProxy

if TYPE_CHECKING:
    from selenium.webdriver import Chrome as WebDriver

TEMPLATE_DB = "fraudflow_template"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fraudflow-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_root / "pgdata", durable=False)
    server.start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture(scope="session")
def redis_server(tmp_root: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_root / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: EmbeddedRedis) -> str:
    """The embedded Redis, emptied for this test."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    return redis_server.url


@pytest.fixture(scope="session")
async def template_database(pg_server: EmbeddedPostgres) -> str:
    await create_database(pg_server.url(), TEMPLATE_DB)
    conn = await asyncpg.connect(pg_server.url(TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


@pytest.fixture
async def database_url(pg_server: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield pg_server.url(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def moto_server(tmp_root: Path) -> Iterator[KinesisServer]:
    server = MotoKinesis(log_dir=tmp_root)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kinesis_local_server(tmp_root: Path) -> Iterator[KinesisServer]:
    reason = kinesis_local_missing_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"kinesis-local is required in CI: {reason}")
        pytest.skip(f"kinesis-local unavailable: {reason}")
    server = KinesisLocal(log_dir=tmp_root)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["moto"])
def kinesis_server(request: pytest.FixtureRequest) -> KinesisServer:
    """The Kinesis emulator for a test; parametrize with indirect=True to run on both backends."""
    name = "kinesis_local_server" if request.param == "kinesis-local" else "moto_server"
    server: KinesisServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def shard_count() -> int:
    return 2


@pytest.fixture
async def settings(kinesis_server: KinesisServer, database_url: str, shard_count: int, tmp_path: Path) -> Settings:
    """Settings pointing at this test's own database and a freshly created stream."""
    stream = f"test-{uuid.uuid4().hex[:10]}"
    value = Settings(
        DATABASE_URL=database_url,
        AWS_ENDPOINT_URL_KINESIS=kinesis_server.endpoint_url,
        AWS_REGION="us-east-1",
        FRAUDFLOW_STREAM=stream,
        FRAUDFLOW_SHARDS=shard_count,
        FRAUDFLOW_DATA_DIR=tmp_path,
        _env_file=None,
    )
    async with kinesis_client(value) as client:
        await ensure_stream(client, stream, shard_count)
    return value


@pytest.fixture
async def fault_proxy(kinesis_server: KinesisServer) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(kinesis_server.endpoint_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def proxied_settings(settings: Settings, fault_proxy: FaultProxy) -> Settings:
    """The test's settings, with Kinesis reached through the fault-injecting proxy."""
    return settings.model_copy(update={"kinesis_endpoint_url": fault_proxy.endpoint_url})


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,2200",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()
