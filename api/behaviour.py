"""Behaviour features at request time: one online-store call per natural batch, within a time budget.

Whatever arrives while a call is in flight rides in the next one, so under load a call carries many
transactions and idle latency stays one round trip. When the store is down, or slower than the budget
(FRAUDFLOW_FEATURES_BUDGET_MS), the batch is scored without behaviour features (missing values, which the
trees route) and says so (`features_degraded`); the next batch tries again, so it recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.metrics import ApiMetrics
from fraudflow.behaviour.definitions import N_STATE, Activity
from fraudflow.behaviour.online import OnlineStore
from fraudflow.logging import get_logger

log = get_logger(__name__)
MAX_BATCH = 512  # transactions per store call
_WARN_EVERY_S = 10.0


@dataclass(frozen=True)
class Looked:
    """State features of a request's transactions (n, N_STATE), NaN where unknown; degraded: not from the store."""

    state: npt.NDArray[np.float64]
    degraded: bool


@dataclass
class _Pending:
    activities: list[Activity]
    future: asyncio.Future[Looked]


def _missing(n: int) -> npt.NDArray[np.float64]:
    return np.full((n, N_STATE), math.nan)


class BehaviourLookup:
    def __init__(
        self, store: OnlineStore | None, metrics: ApiMetrics, *, budget_s: float, max_in_flight: int = 2
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.budget_s = budget_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._warned_at = -math.inf

    async def __aenter__(self) -> BehaviourLookup:
        if self.store is not None:
            self._collector = asyncio.create_task(self._collect(), name="behaviour-lookup")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._collector:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self.store is not None:
            await self.store.aclose()

    def submit(self, activities: list[Activity]) -> asyncio.Future[Looked]:
        future: asyncio.Future[Looked] = asyncio.get_running_loop().create_future()
        if self.store is None:  # no store configured: every transaction is scored without behaviour
            self.metrics.features_degraded.labels("no_store").inc(len(activities))
            future.set_result(Looked(_missing(len(activities)), degraded=True))
        else:
            self._queue.put_nowait(_Pending(activities, future))
        return future

    async def _collect(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await self._slots.acquire()
            size = len(batch[0].activities)
            while size < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += len(item.activities)
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        assert self.store is not None  # the collector runs only with a store
        activities = [a for pending in batch for a in pending.activities]
        started = time.perf_counter()
        degraded = False
        try:
            state = await asyncio.wait_for(self.store.observe(activities), self.budget_s)
        except Exception as error:  # whatever it is, the batch is scored without behaviour: never a 5xx
            reason = "timeout" if isinstance(error, TimeoutError) else "unavailable"
            self.metrics.features_degraded.labels(reason).inc(len(activities))
            self._warn(reason, error)
            state, degraded = _missing(len(activities)), True
        finally:
            self._slots.release()
        self.metrics.features_seconds.observe(time.perf_counter() - started)
        offset = 0
        for pending in batch:
            n = len(pending.activities)
            if not pending.future.done():  # the request may have been cancelled
                pending.future.set_result(Looked(state[offset : offset + n], degraded))
            offset += n

    def _warn(self, reason: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:  # once in a while, not once per batch
            self._warned_at = now
            log.warning("scoring without behaviour features", reason=reason, error=type(error).__name__)
