"""How late this worker's event loop runs what is due.

Every awaited reply (the feature store's, Kinesis's, the scorer's) waits for the loop to come round to it, so
the lag adds to each stage a transaction passes through: a lag of milliseconds means the worker is saturated,
whatever its CPU graph says. Add workers or instances (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import Histogram

from api.background import in_background

INTERVAL_S = 0.05


@contextlib.asynccontextmanager
async def measuring_lag(histogram: Histogram, interval_s: float = INTERVAL_S) -> AsyncIterator[None]:
    """Observe, every `interval_s` while the block runs, how long after its time a sleeping task resumes."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            histogram.observe(max(0.0, loop.time() - due))

    async with in_background(run(), "event-loop-lag"):
        yield
