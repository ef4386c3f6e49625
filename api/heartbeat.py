"""Publish this process's heartbeat (fraudflow/heartbeats.py) on the event stream at a fixed interval."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from api.background import in_background
from fraudflow.heartbeats import Tally, heartbeat_key
from fraudflow.logging import get_logger
from fraudflow.producer import BufferFull, KinesisProducer, PublishError, PutResult

log = get_logger(__name__)


def new_tally() -> Tally:
    return Tally(f"{socket.gethostname()}:{os.getpid()}", datetime.now(UTC))


def _retrieved(future: asyncio.Future[PutResult]) -> None:
    if not future.cancelled():
        future.exception()  # a failure is logged by the producer and made up by the next beat


@contextlib.asynccontextmanager
async def beating(tally: Tally, producer: KinesisProducer, interval_s: float) -> AsyncIterator[None]:
    """Send a heartbeat every `interval_s` while the block runs, and a last one as it ends."""
    key = heartbeat_key(tally.process)

    def beat() -> None:
        try:
            producer.publish(tally.heartbeat(), key).add_done_callback(_retrieved)
        except (BufferFull, PublishError) as error:  # the next beat repeats the same minutes
            log.warning("heartbeat not published", error=type(error).__name__)

    async def run() -> None:
        while True:
            await asyncio.sleep(interval_s)
            beat()

    async with in_background(run(), "api-heartbeat"):
        try:
            yield
        finally:
            beat()  # before the producer's final flush: the last minutes' counts are complete
