"""The event-loop lag metric: what an operator reads to see a saturated worker."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram

from api.loop_lag import measuring_lag
from tests.consumer_helpers import wait_until

REGISTRY = CollectorRegistry()


def _count(le: str | None = None) -> float:
    value = REGISTRY.get_sample_value(*(("lag_seconds_count",) if le is None else ("lag_seconds_bucket", {"le": le})))
    assert value is not None
    return value


async def test_a_blocked_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    lag = Histogram("lag_seconds", "test", buckets=(0.01, 0.1, 1.0), registry=REGISTRY)
    async with measuring_lag(lag, interval_s=0.01):

        async def sampled(n: float) -> bool:
            return _count() >= n

        await wait_until(lambda: sampled(3), deadline_s=5, what="three samples")
        assert _count("0.1") == _count()  # an idle loop: nothing due waits 100 ms
        before = _count()
        # The stimulus, not a wait: the loop is held, as by a CPU-bound callback.
        time.sleep(0.2)  # noqa: ASYNC251
        await wait_until(lambda: sampled(before + 1), deadline_s=5, what="a sample after the block")
    assert _count() - _count("0.1") >= 1  # the block was measured: at least one sample over 100 ms
