"""The API process as shipped bounds what one client can hold: pipelined requests and slow or idle connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import psutil

from fraudflow.config import Settings
from tests.test_api_process import uvicorn

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_pipelining_without_reading_answers_keeps_memory_flat(settings: Settings, tmp_path: Path) -> None:
    with uvicorn(settings, tmp_path / "api.log") as (process, url):
        server = psutil.Process(process.pid)
        before = server.memory_info().rss
        clients = [socket.create_connection(("127.0.0.1", _port(url))) for _ in range(2)]
        burst = HEALTHZ * 2_000
        sent = 0
        end = time.monotonic() + 5
        for client in clients:
            client.setblocking(False)
        while time.monotonic() < end:  # as fast as the server lets us, never reading an answer
            for client in clients:
                with contextlib.suppress(BlockingIOError):
                    sent += client.send(burst)
        grown_mb = (server.memory_info().rss - before) / 2**20
        for client in clients:
            client.close()
    # Unbounded (uvicorn's plain httptools protocol) grows by hundreds of MB in these 5 s.
    assert grown_mb < 40, f"grew {grown_mb:.0f} MB after {sent // len(HEALTHZ)} pipelined requests"


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(65536) == b""
    except ConnectionError:
        return True


async def _slow_and_idle(port: int) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    started = time.monotonic()
    for _, writer in slow:
        writer.write(b"POST /predict HTTP/1.1\r\nHost: api\r\n")

    async def drip(writer: asyncio.StreamWriter) -> None:
        for i in range(100):  # a header line every 0.2 s: never a whole request
            writer.write(b"X-Drip-%d: 1\r\n" % i)
            await asyncio.sleep(0.2)

    drips = [asyncio.create_task(drip(writer)) for _, writer in slow]
    closed = await asyncio.wait_for(asyncio.gather(*(_closed_by_server(r) for r, _ in idle + slow)), 10)
    elapsed = time.monotonic() - started
    for task in drips:
        task.cancel()
    await asyncio.gather(*drips, return_exceptions=True)
    assert all(closed)
    assert 0.9 < elapsed < 5, f"closed after {elapsed:.1f} s, timeout 1 s"


async def _answered_and_kept(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(HEALTHZ)
        assert (await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(1.5)  # longer than the request timeout: a finished request is not held against it
    writer.close()


def test_slow_and_idle_connections_are_closed(settings: Settings, tmp_path: Path) -> None:
    extra = {"FRAUDFLOW_HTTP_REQUEST_TIMEOUT_S": "1"}
    with uvicorn(settings, tmp_path / "api.log", **extra) as (_, url):
        asyncio.run(_slow_and_idle(_port(url)))
        asyncio.run(_answered_and_kept(_port(url)))
