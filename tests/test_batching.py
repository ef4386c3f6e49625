"""Micro-batching: concurrent rows share onnxruntime calls, off the event loop, with the same results."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from fraudflow.batching import MicroBatcher
from fraudflow.data.synthetic import generate
from fraudflow.scoring import Scorer


async def test_concurrent_rows_share_calls_and_match_direct_scoring() -> None:
    scorer = Scorer()
    batches: list[int] = []
    batcher = MicroBatcher(scorer, max_rows=64, max_wait_s=0.002, on_batch=batches.append)
    await batcher.start()
    rows = generate(300, seed=7).features
    try:
        results = await asyncio.gather(*(batcher.submit(rows[i : i + 1]) for i in range(300)))
    finally:
        await batcher.stop()
    direct = scorer.score_batch(rows)
    assert np.allclose(np.concatenate([r.fraud_proba for r in results]), direct.fraud_proba, atol=1e-6)
    assert np.array_equal(np.concatenate([r.decision for r in results]), direct.decision)
    assert sum(batches) == 300
    assert len(batches) < 300 / 4  # gathered, not one call per row
    assert max(batches) <= 64


async def test_inference_runs_off_the_event_loop() -> None:
    batcher = MicroBatcher(Scorer())
    await batcher.start()
    big = np.repeat(generate(1_000, seed=1).features, 300, axis=0)  # long enough to notice a blocked loop
    try:
        scoring = batcher.submit(big)
        worst = 0.0
        while not scoring.done():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - before)
        assert len((await scoring).fraud_proba) == 300_000
    finally:
        await batcher.stop()
    assert worst < 0.1, f"the event loop stalled for {worst * 1000:.0f} ms"


async def test_a_failed_batch_fails_its_callers_and_the_batcher_keeps_serving() -> None:
    batcher = MicroBatcher(Scorer())
    await batcher.start()
    try:
        with pytest.raises(ValueError, match="float32"):
            await batcher.submit(np.zeros((1, 30), dtype=np.float64))
        ok = await batcher.submit(generate(3, seed=2).features)
        assert len(ok.fraud_proba) == 3
    finally:
        await batcher.stop()
