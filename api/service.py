"""Score a set of transactions and publish each scored event: the work behind /predict and /predict/batch."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from api.metrics import ApiMetrics
from api.schemas import PredictRequest
from fraudflow.batching import MicroBatcher
from fraudflow.config import DeliveryMode, Settings
from fraudflow.data.columns import AMOUNT_INDEX
from fraudflow.events import SCHEMA_VERSION, encode_event, event_id_for
from fraudflow.kinesis import BufferFull, KinesisProducer, PublishError, PutResult
from fraudflow.scoring import Decision

DECISIONS = [d.label for d in Decision]


class Unavailable(Exception):
    """The event could not be published in time (or the buffer is full): the client should retry (503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    """One transaction's answer: a response body, or the reason it could not be published."""

    body: dict[str, Any]
    unavailable: str | None = None


def _event(
    request: PredictRequest,
    event_id: str,
    received_at: datetime,
    proba: float,
    anomaly: float,
    decision: int,
    version: str,
) -> dict[str, Any]:
    meta = request.metadata
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "timestamp": meta.timestamp,
        "received_at": received_at,
        "user_id": meta.user_id,
        "source": meta.source,
        "fraud_prediction": int(decision == Decision.DECLINE),
        "fraud_proba": proba,
        "anomaly_score": anomaly,
        "decision": DECISIONS[decision],
        "model_version": version,
        "amount": float(request.data[AMOUNT_INDEX]),
        "features": request.data,
        "device_info": meta.device_info.model_dump() if meta.device_info else None,
        "ip_address": str(meta.ip_address) if meta.ip_address is not None else None,
        "geo": meta.geo.model_dump() if meta.geo else None,
    }


class ScoringService:
    def __init__(
        self, settings: Settings, batcher: MicroBatcher, producer: KinesisProducer, metrics: ApiMetrics
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.producer = producer
        self.metrics = metrics

    async def predict(self, requests: list[PredictRequest], keys: list[str | None]) -> list[Outcome]:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        matrix = np.stack([r.data for r in requests]) if len(requests) > 1 else requests[0].data[None, :]
        scores = await self.batcher.score(matrix)
        scored = time.perf_counter()
        outcomes: list[Outcome] = []
        waits: list[tuple[int, asyncio.Future[PutResult]]] = []
        for i, request in enumerate(requests):
            event_id = str(event_id_for(keys[i]))
            proba, anomaly, decision = float(scores.fraud_proba[i]), float(scores.anomaly[i]), int(scores.decision[i])
            self.metrics.transactions.labels(DECISIONS[decision]).inc()
            body = {
                "anomaly_detector": {"score": anomaly},
                "fraud_classifier": {"pred_proba": proba, "prediction": int(decision == Decision.DECLINE)},
                "event_id": event_id,
                "decision": DECISIONS[decision],
                "model_version": scores.model_version,
            }
            outcome = Outcome(body)
            outcomes.append(outcome)
            record = encode_event(
                _event(request, event_id, received_at, proba, anomaly, decision, scores.model_version)
            )
            try:
                future = self.producer.publish(record, request.metadata.user_id)
            except BufferFull:
                outcome.unavailable = "buffer_full"
                continue
            except PublishError:
                outcome.unavailable = "rejected"
                continue
            if self.settings.delivery_mode is DeliveryMode.ACK:
                waits.append((i, future))
        if waits:
            await self._await_acks(outcomes, waits)
        finished = time.perf_counter()
        timing = {
            "total_ms": round((finished - started) * 1000, 3),
            "scoring_ms": round((scored - started) * 1000, 3),
            "publish_ms": round((finished - scored) * 1000, 3),
        }
        for outcome in outcomes:
            outcome.body["timing"] = timing
            if outcome.unavailable:
                self.metrics.rejected.labels(outcome.unavailable).inc()
        return outcomes

    async def _await_acks(self, outcomes: list[Outcome], waits: list[tuple[int, asyncio.Future[PutResult]]]) -> None:
        # Shielded: a timed-out record stays queued and is still published; a client retry with the same
        # idempotency key produces the same event id, which the consumer stores once.
        pending = {asyncio.shield(future): index for index, future in waits}
        done, not_done = await asyncio.wait(pending, timeout=self.settings.publish_timeout_s)
        for shielded in not_done:
            outcomes[pending[shielded]].unavailable = "publish_timeout"
            shielded.cancel()
        for shielded in done:
            if shielded.exception() is not None:
                outcomes[pending[shielded]].unavailable = "rejected"
