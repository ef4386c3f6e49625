"""The dashboard's bridge to asyncpg: Dash callbacks are synchronous, so queries run on a private event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

from fraudflow.db.target import DatabaseTarget
from fraudflow.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")
Query = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not answer; the page shows a banner and retries on the next refresh. The message is for
    an analyst (the error itself goes to the log)."""


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "PostgreSQL refuses connections (is it running?)"
    if isinstance(error, TimeoutError):
        return "PostgreSQL did not answer in time"
    if isinstance(error, asyncpg.CannotConnectNowError | asyncpg.AdminShutdownError):
        return "PostgreSQL is starting or shutting down"
    return "the connection to PostgreSQL failed"


class Database:
    def __init__(self, database: DatabaseTarget | str, *, max_size: int = 4, timeout_s: float = 10.0) -> None:
        self.target = database if isinstance(database, DatabaseTarget) else DatabaseTarget(database)
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dashboard-db", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool | None = None

    async def _one(self, query: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                **self.target.connect_kwargs(),
                # No floor: a pool with one keeps reconnecting in the background while PostgreSQL is down
                # (a refresh finds out by itself, and says so), and idle connections still stay open.
                min_size=0,
                max_size=self.max_size,
                timeout=5,
                command_timeout=self.timeout_s,
            )
        async with self._pool.acquire() as conn:
            return await query(conn, *args)

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(self.timeout_s + 5)
        except _UNAVAILABLE as error:
            future.cancel()
            log.warning("dashboard query failed", error=f"{type(error).__name__}: {error}")
            raise DatabaseUnavailable(_reason(error)) from None

    def run(self, query: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`query(conn, *args)` on a pooled connection; connection problems become DatabaseUnavailable."""
        return self._wait(self._one(query, args))

    def gather(self, queries: dict[str, Query]) -> dict[str, Any]:
        """Several queries at once, each on its own pooled connection (a refresh costs one round trip); their
        results under the same names."""

        async def everything() -> dict[str, Any]:
            results = await asyncio.gather(*(self._one(query, args) for query, args in queries.values()))
            return dict(zip(queries, results, strict=True))

        return self._wait(everything())

    def close(self) -> None:
        if self._pool is not None:
            asyncio.run_coroutine_threadsafe(self._pool.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
