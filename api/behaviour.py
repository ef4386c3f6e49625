"""Behaviour features at request time: one online-store call per natural batch, within a time budget.

What the requests of one turn of the event loop submit rides in one call, and whatever arrives while the
calls are in flight rides in the next, so under load a call carries many transactions and idle latency stays
one round trip. When the store is down, or slower than the budget (FRAUDFLOW_FEATURES_BUDGET_MS), the batch
is scored without behaviour features (missing values, which the trees route) and says so
(`features_degraded`); the next batch tries again, so it recovers by itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
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
    then: Callable[[Looked], None]


def _missing(n: int) -> npt.NDArray[np.float64]:
    return np.full((n, N_STATE), math.nan)


class BehaviourLookup:
    """Calls to the store, at most `max_in_flight` at once, each carrying every transaction that waits.

    Each step between a request and its features that goes through the event loop waits for the loop to come
    round (the lag, `fraudflow_api_event_loop_lag_seconds`, which grows with load and bursts), so a call
    takes the fewest: a caller's task starts on the next turn of the loop (what the requests of one turn
    submit rides together), sends, and on the reply hands each request its features directly; a task with
    more waiting calls again at once.
    """

    def __init__(
        self, store: OnlineStore | None, metrics: ApiMetrics, *, budget_s: float, max_in_flight: int = 2
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.budget_s = budget_s
        self.max_in_flight = max_in_flight
        self._pending: deque[_Pending] = deque()
        self._callers: set[asyncio.Task[None]] = set()
        self._starting = False  # a caller is created and will take what waits when it runs
        self._warned_at = -math.inf

    async def __aenter__(self) -> BehaviourLookup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._callers:  # each calls until nothing waits
            await asyncio.gather(*self._callers, return_exceptions=True)
        if self.store is not None:
            await self.store.aclose()

    def submit(self, activities: list[Activity], then: Callable[[Looked], None]) -> None:
        """Look the transactions up; `then` is called with their features (on the event loop)."""
        if self.store is None:  # no store configured: every transaction is scored without behaviour
            self.metrics.child(self.metrics.features_degraded, "no_store").inc(len(activities))
            then(Looked(_missing(len(activities)), degraded=True))
            return
        self._pending.append(_Pending(activities, then))
        if not self._starting and len(self._callers) < self.max_in_flight:
            self._starting = True
            self._callers.add(asyncio.create_task(self._call()))

    def _take(self) -> list[_Pending]:
        batch, size = [], 0
        while self._pending and size < MAX_BATCH:
            batch.append(self._pending.popleft())
            size += len(batch[-1].activities)
        return batch

    async def _call(self) -> None:
        self._starting = False
        try:
            while batch := self._take():
                looked = await self._lookup([a for pending in batch for a in pending.activities])
                offset = 0
                for pending in batch:
                    n = len(pending.activities)
                    try:
                        pending.then(Looked(looked.state[offset : offset + n], looked.degraded))
                    except Exception:  # one request's failure is its own (its deadline answers it)
                        log.exception("behaviour features not handed over")
                    offset += n
        finally:
            # Leaves the set in the same step that found nothing waiting: a done callback would run a turn
            # later, and a submission in between would see every caller busy and wait for nobody.
            task = asyncio.current_task()
            assert task is not None
            self._callers.discard(task)

    async def _lookup(self, activities: list[Activity]) -> Looked:
        assert self.store is not None  # callers run only with a store
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.budget_s):  # inline: a wait_for would run the call as another task
                looked = Looked(await self.store.observe(activities), degraded=False)
        except Exception as error:  # whatever it is, the batch is scored without behaviour: never a 5xx
            reason = "timeout" if isinstance(error, TimeoutError) else "unavailable"
            self.metrics.child(self.metrics.features_degraded, reason).inc(len(activities))
            self._warn(reason, error)
            looked = Looked(_missing(len(activities)), degraded=True)
        self.metrics.features_seconds.observe(time.perf_counter() - started)
        return looked

    def _warn(self, reason: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:  # once in a while, not once per batch
            self._warned_at = now
            log.warning("scoring without behaviour features", reason=reason, error=type(error).__name__)
