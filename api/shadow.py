"""Shadow scoring: the challenger scores the transactions the champion decided, off the request path.

The champion's answer never waits for the challenger. Transactions gather while the challenger scores the
previous batch (one thread, one batch at a time, so under load batches grow by themselves); beyond a bounded
backlog they are skipped and counted rather than queued, so a slow challenger costs the API a bounded share
of its CPU and no latency. Each scored batch goes to the stream as one `shadow_scores` record per champion
version (fraudflow/shadow_scores.py), which the consumer stores in `challenger_scores`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from api.metrics import ApiMetrics
from fraudflow.logging import get_logger
from fraudflow.producer import BufferFull, KinesisProducer, PublishError, PutResult
from fraudflow.scoring import Scorer, Scores
from fraudflow.shadow_scores import MAX_ROWS, build_shadow_scores

log = get_logger(__name__)
MAX_BACKLOG = 4 * MAX_ROWS  # transactions waiting for the challenger; beyond, they are skipped


@dataclass(frozen=True)
class _Chunk:
    matrix: npt.NDArray[np.float32]
    event_ids: list[str]
    champion: Scores


class ShadowScoring:
    def __init__(
        self, scorer: Scorer, producer: KinesisProducer, metrics: ApiMetrics, *, max_backlog: int = MAX_BACKLOG
    ) -> None:
        self.scorer = scorer
        self.producer = producer
        self.metrics = metrics
        self.max_backlog = max_backlog
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._backlog: collections.deque[_Chunk] = collections.deque()
        self._waiting = 0  # transactions in the backlog
        self._running: asyncio.Task[None] | None = None
        self._busy = metrics.shadow_skipped.labels("busy")
        self._failed = metrics.shadow_skipped.labels("failed")
        self._unpublished = metrics.shadow_skipped.labels("unpublished")

    async def __aenter__(self) -> ShadowScoring:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Finish the batch in flight (its record is published before the producer flushes); what waits is
        dropped: shadow scores are a comparison, not a record anyone was promised."""
        self._backlog.clear()
        self._waiting = 0
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        self._executor.shutdown(wait=True)

    def add(self, matrix: npt.NDArray[np.float32], event_ids: list[str], champion: Scores) -> None:
        """Transactions the champion scored (its layout and scores), for the challenger if there is one."""
        if self.scorer.challenger is None or not event_ids:
            return
        if self._waiting + len(event_ids) > self.max_backlog:
            self._busy.inc(len(event_ids))
            return
        self._backlog.append(_Chunk(matrix, event_ids, champion))
        self._waiting += len(event_ids)
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name="shadow-scoring")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._backlog and (challenger := self.scorer.challenger) is not None:
                batch = [self._backlog.popleft()]
                rows = len(batch[0].event_ids)
                while self._backlog and rows + len(self._backlog[0].event_ids) <= MAX_ROWS:
                    batch.append(self._backlog.popleft())
                    rows += len(batch[-1].event_ids)
                self._waiting -= rows
                matrix = np.concatenate([c.matrix for c in batch]) if len(batch) > 1 else batch[0].matrix
                try:
                    scores = await loop.run_in_executor(self._executor, challenger.score, matrix, False)
                except Exception as error:  # a challenger must never disturb the champion
                    self._failed.inc(rows)
                    log.warning("challenger failed to score a batch", version=challenger.version, error=str(error))
                    continue
                self._publish(batch, scores)
        finally:
            self._running = None

    def _publish(self, batch: list[_Chunk], challenger: Scores) -> None:
        """One record per run of chunks with the same champion version (a reload may fall between two), of
        at most MAX_ROWS transactions."""
        scored_at = datetime.now(UTC)
        event_ids = [i for c in batch for i in c.event_ids]
        champion_proba = np.concatenate([c.champion.fraud_proba for c in batch])
        champion_decision = np.concatenate([c.champion.decision for c in batch])
        runs: list[tuple[str, int, int]] = []  # champion version, first row, end
        for chunk in batch:
            version, size = chunk.champion.model_version, len(chunk.event_ids)
            end = runs[-1][2] if runs else 0
            if runs and runs[-1][0] == version:
                runs[-1] = (version, runs[-1][1], end + size)
            else:
                runs.append((version, end, end + size))
        for version, first, end in runs:
            for start in range(first, end, MAX_ROWS):
                part = slice(start, min(start + MAX_ROWS, end))
                record = build_shadow_scores(
                    champion_version=version,
                    challenger_version=challenger.model_version,
                    scored_at=scored_at,
                    event_ids=event_ids[part],
                    champion_proba=champion_proba[part],
                    champion_decision=champion_decision[part],
                    fraud_proba=challenger.fraud_proba[part],
                    anomaly_score=challenger.anomaly[part],
                    decision=challenger.decision[part],
                )
                size = part.stop - part.start
                try:
                    ack = self.producer.publish(record, event_ids[part.start])
                except (PublishError, BufferFull):
                    self._unpublished.inc(size)
                    continue
                ack.add_done_callback(functools.partial(self._acknowledged, size))

    def _acknowledged(self, size: int, ack: asyncio.Future[PutResult]) -> None:
        if ack.cancelled() or ack.exception() is not None:
            self._unpublished.inc(size)
        else:
            self.metrics.shadow_scored.inc(size)
