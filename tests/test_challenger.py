"""Champion and challenger: the challenger scores the same transactions in shadow, off the request path and
at bounded cost; its scores reach `challenger_scores` through the stream, once, whatever is read twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from api.metrics import ApiMetrics
from api.shadow import ShadowScoring
from fraudflow.config import Settings
from fraudflow.registry import Registry
from fraudflow.scoring import Scorer
from tests.consumer_helpers import wait_until, worker
from tests.registry_helpers import copy_registry, publish_variant
from tests.test_api import body, running


@pytest.fixture
def challenged(tmp_path: Path) -> tuple[Path, str, str]:
    """A registry whose champion is the shipped set, with a challenger."""
    root = copy_registry(tmp_path / "registry")
    registry = Registry(root)
    champion = registry.current()
    assert champion is not None
    challenger = publish_variant(root, {"thresholds.review": 0.01})
    registry.challenge(challenger, "test")
    return root, champion, challenger


async def test_the_challenger_scores_every_published_transaction_in_shadow_and_decides_none(
    settings: Settings, challenged: tuple[Path, str, str], db: asyncpg.Connection
) -> None:
    root, champion, challenger = challenged
    settings = settings.model_copy(update={"models_dir": root})
    async with running(settings) as (_app, http):
        answers = await asyncio.gather(*(http.post("/predict", json=body(user_id=f"u{i % 7}")) for i in range(40)))
        batch = await http.post("/predict/batch", json={"transactions": [body(user_id="b1"), body(user_id="b2")]})
        assert batch.status_code == 200, batch.text
        metrics = await http.get("/metrics")
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["model_version"] for a in answers} == {champion}  # the champion decides
    assert f'fraudflow_model_info{{role="challenger",version="{challenger}"}} 1.0' in metrics.text
    event_ids = {a.json()["event_id"] for a in answers} | {t["result"]["event_id"] for t in batch.json()["results"]}

    async with worker(settings, "w1"):
        await wait_until(lambda: _count(db, "challenger_scores", 42), what="42 shadow scores stored", deadline_s=30)
        await wait_until(lambda: _count(db, "fraud_predictions", 42), what="42 events stored")
    rows = await db.fetch(
        """SELECT c.*, p.fraud_proba AS served_proba, p.model_version AS served_version
           FROM challenger_scores c JOIN fraud_predictions p USING (event_id)"""
    )
    assert {str(r["event_id"]) for r in rows} == event_ids
    assert {(r["challenger_version"], r["champion_version"], r["served_version"]) for r in rows} == {
        (challenger, champion, champion)
    }
    # The same files (only the thresholds differ): the challenger's probabilities are the champion's.
    assert all(r["champion_proba"] == pytest.approx(r["served_proba"]) for r in rows)
    assert all(r["fraud_proba"] == pytest.approx(r["champion_proba"]) for r in rows)


async def _count(db: asyncpg.Connection, table: str, expected: int) -> bool:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}")) >= expected


class _Producer:
    """What the shadow scorer publishes to, recorded (its records' content is tested end to end above)."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def publish(self, data: bytes, partition_key: str) -> asyncio.Future[None]:
        self.records.append(data)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_shadow_scoring_is_bounded_it_skips_and_counts_rather_than_queue(
    challenged: tuple[Path, str, str],
) -> None:
    root, _, _ = challenged
    scorer = Scorer(root)
    metrics = ApiMetrics()
    producer = _Producer()
    shadow = ShadowScoring(scorer, producer, metrics, max_backlog=130)  # type: ignore[arg-type]
    rows = np.random.default_rng(1).normal(size=(60, 30)).astype(np.float32)
    champion = scorer.score_batch(rows)
    async with shadow:
        # Added while the shadow scorer has not yet run: 120 wait, the next 60 would exceed the backlog.
        for part in range(3):
            shadow.add(rows, [f"00000000-0000-0000-000{part}-{i:012d}" for i in range(60)], champion)

        async def scored() -> bool:
            return metrics.registry.get_sample_value("fraudflow_shadow_scored_total") == 120

        await wait_until(scored, deadline_s=20, what="120 transactions scored in shadow")
        shadow.add(rows, [f"00000000-0000-0000-0009-{i:012d}" for i in range(60)], champion)  # waits at exit
    skipped = metrics.registry.get_sample_value("fraudflow_shadow_skipped_total", {"reason": "busy"})
    assert skipped == 60
    assert metrics.registry.get_sample_value("fraudflow_shadow_scored_total") == 120
    assert len(producer.records) >= 1
    assert metrics.registry.get_sample_value("fraudflow_shadow_scored_total") == 120  # the waiting 60 dropped
