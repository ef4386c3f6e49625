"""The embedded PostgreSQL, Kinesis endpoint and Redis together, as `fraudflow services` and `fraudflow up` run
them."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from fraudflow.aws import kinesis_client
from fraudflow.config import Settings
from fraudflow.local.kinesis import KinesisLocal, KinesisServer, MotoKinesis
from fraudflow.local.postgres import EmbeddedPostgres
from fraudflow.local.redis import EmbeddedRedis
from fraudflow.streams import ensure_stream

DATABASE = "fraudflow"


class KinesisBackend(enum.StrEnum):
    MOTO = "moto"
    KINESIS_LOCAL = "kinesis-local"


def make_kinesis_server(backend: KinesisBackend, *, port: int = 0, log_dir: Path | None = None) -> KinesisServer:
    if backend is KinesisBackend.KINESIS_LOCAL:
        return KinesisLocal(port=port, log_dir=log_dir)
    return MotoKinesis(port=port, log_dir=log_dir)


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            # Identifiers cannot be bound as parameters; `name` is ours, quoted by PostgreSQL itself.
            quoted = await conn.fetchval("SELECT quote_ident($1)", name)
            await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


@dataclass
class EmbeddedServices:
    """Embedded PostgreSQL (data kept under data_dir), a Kinesis emulator with the stream created, and a
    redis-server for the online feature store (in memory only)."""

    data_dir: Path
    pg_port: int = 0
    kinesis_port: int = 0
    redis_port: int = 0
    backend: KinesisBackend = KinesisBackend.MOTO
    durable: bool = True
    postgres: EmbeddedPostgres = field(init=False)
    kinesis: KinesisServer = field(init=False)
    redis: EmbeddedRedis = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.data_dir / "pgdata", port=self.pg_port, durable=self.durable)
        self.kinesis = make_kinesis_server(self.backend, port=self.kinesis_port, log_dir=self.data_dir)
        self.redis = EmbeddedRedis(self.data_dir / "redis", port=self.redis_port)

    @property
    def database_url(self) -> str:
        return self.postgres.url(DATABASE)

    def env(self, settings: Settings) -> dict[str, str]:
        """The environment lines that point every other command at these services."""
        return {
            "DATABASE_URL": self.database_url,
            "AWS_ENDPOINT_URL_KINESIS": self.kinesis.endpoint_url,
            "AWS_REGION": settings.aws_region,
            "FRAUDFLOW_STREAM": settings.stream_name,
            "FRAUDFLOW_REDIS_URL": self.redis.url,
        }

    async def start(self, settings: Settings) -> None:
        await asyncio.to_thread(self.postgres.start)
        try:
            await create_database(self.postgres.url(), DATABASE)
            await asyncio.to_thread(self.kinesis.start)
            await asyncio.to_thread(self.redis.start)
            local = settings.model_copy(update={"kinesis_endpoint_url": self.kinesis.endpoint_url})
            async with kinesis_client(local) as client:
                await ensure_stream(client, settings.stream_name, settings.shards)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(self.kinesis.stop)
        await asyncio.to_thread(self.postgres.stop)
