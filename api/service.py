"""Score a set of transactions and publish each scored event: the work behind /predict and /predict/batch.

A request suspends once: scoring, publishing and the Kinesis acknowledgement are chained with callbacks on
the event loop, and the request's future resolves when its outcome is known (or its deadline passes).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from api.behaviour import BehaviourLookup, Looked
from api.ids import IdSource
from api.metrics import ApiMetrics
from api.policy import PolicyWatcher
from api.schemas import PredictRequest
from api.shadow import ShadowScoring
from api.verdicts import facts, identities, model_reason
from fraudflow.batching import MicroBatcher
from fraudflow.behaviour.definitions import NAMES, Activity, time_features
from fraudflow.config import DeliveryMode, Settings
from fraudflow.data.columns import AMOUNT_INDEX
from fraudflow.decisions.policy import Verdict
from fraudflow.events import build_event, event_id_for
from fraudflow.heartbeats import Tally, minute_of
from fraudflow.producer import BufferFull, KeyBacklogFull, KinesisProducer, PublishError, PutResult
from fraudflow.scoring import Decision, Scores

DECISIONS = [d.label for d in Decision]


# Why a transaction got 503, and whether its event may still reach the stream: a record that missed the
# publish deadline stays queued and is published later, so its client must retry with the same idempotency key
# (the answer gives it) to get the same event id; a refused, never queued or never scored record
# (scoring_timeout) is not on the stream.
MAY_BE_PUBLISHED = {"publish_timeout"}


@dataclass
class Outcome:
    """One transaction's answer: a response body, or the reason it could not be published (HTTP 503)."""

    body: dict[str, Any]
    idempotency_key: str
    unavailable: str | None = None
    acked: bool = False

    def unavailable_body(self) -> dict[str, Any]:
        """What a 503 says: whether the event may still be published, and how to retry without a duplicate."""
        maybe = self.unavailable in MAY_BE_PUBLISHED
        return {
            "detail": f"scored but {'not yet' if maybe else 'not'} published ({self.unavailable}); retry with "
            "the same idempotency key: the retry is the same event",
            "published": "maybe" if maybe else "no",
            "event_id": self.body["event_id"],
            "idempotency_key": self.idempotency_key,
        }


def _activity(request: PredictRequest, event_id: str) -> Activity:
    meta, geo = request.metadata, request.metadata.geo
    return Activity(
        event_id=event_id,
        user_id=meta.user_id,
        time_s=meta.timestamp.timestamp(),
        amount=float(request.data[AMOUNT_INDEX]),
        device_id=meta.device_info.device_id if meta.device_info else None,
        ip_address=meta.ip_address,
        country=geo.country if geo else None,
        latitude=geo.latitude if geo else None,
        longitude=geo.longitude if geo else None,
    )


def _behaviour_matrix(looked: Looked, activities: list[Activity]) -> npt.NDArray[np.float32]:
    """The behaviour features as the models read them: the store's, then the time of day and week."""
    times = np.array([time_features(a.time_s) for a in activities], dtype=np.float64)
    return np.hstack([looked.state, times]).astype(np.float32)


def _by_name(row: npt.NDArray[np.float32]) -> dict[str, float | None]:
    """A transaction's behaviour features by name, as the event carries them (null when unknown)."""
    return dict(zip(NAMES, [None if v != v else v for v in row.tolist()], strict=True))  # v != v: NaN


def _event(
    request: PredictRequest, body: dict[str, Any], received_at: datetime, behaviour: dict[str, float | None]
) -> bytes:
    """The record body: the answer's values, with what the transaction was scored from."""
    meta = request.metadata
    return build_event(
        event_id=body["event_id"],
        timestamp=meta.timestamp,
        received_at=received_at,
        user_id=meta.user_id,
        source=meta.source,
        fraud_prediction=body["fraud_classifier"]["prediction"],
        fraud_proba=body["fraud_classifier"]["pred_proba"],
        anomaly_score=body["anomaly_detector"]["score"],
        decision=body["decision"],
        model_version=body["model_version"],
        amount=float(request.data[AMOUNT_INDEX]),
        features=request.data,
        device_info=meta.device_info,
        ip_address=meta.ip_address,
        geo=meta.geo,
        behaviour=behaviour,
        features_degraded=body["features_degraded"],
        decided_by=body["decided_by"],
        reasons=body["reasons"],
    )


@dataclass
class _Job:
    requests: list[PredictRequest]
    keys: list[str]
    client: str
    done: asyncio.Future[list[Outcome]]
    started: float
    received_at: datetime
    minute: int  # of received_at, for the heartbeat's counts
    outcomes: list[Outcome] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    looked: Looked | None = None
    behaviour: npt.NDArray[np.float32] | None = None  # (n, len(NAMES)), what the models were given
    matrix: npt.NDArray[np.float32] | None = None  # the scorer's layout: what the champion (and challenger) read
    waiting: int = 0
    scored_at: float = 0.0
    deadline: asyncio.TimerHandle | None = None


class ScoringService:
    def __init__(
        self,
        settings: Settings,
        batcher: MicroBatcher,
        behaviour: BehaviourLookup,
        policy: PolicyWatcher,
        producer: KinesisProducer,
        metrics: ApiMetrics,
        tally: Tally,
        shadow: ShadowScoring,
    ) -> None:
        self.settings = settings
        self.shadow = shadow
        self.behaviour = behaviour
        self.policy = policy
        self.tally = tally
        self.batcher = batcher
        self.producer = producer
        self.metrics = metrics
        self._decision_counters = {label: metrics.transactions.labels(label) for label in DECISIONS}
        self._ack = settings.delivery_mode is DeliveryMode.ACK
        self._keys = IdSource()  # for requests without an idempotency key: the 503 answer hands it out

    async def predict(self, requests: list[PredictRequest], keys: list[str | None], client: str) -> list[Outcome]:
        """Score and publish; `keys` are the clients' idempotency keys (None: one is made), `client` the API
        client they are scoped to. The answer comes within the publish timeout, scoring included."""
        loop = asyncio.get_running_loop()
        given = [key or self._keys.next() for key in keys]
        received_at = datetime.now(UTC)
        job = _Job(
            requests, given, client, loop.create_future(), time.perf_counter(), received_at, minute_of(received_at)
        )
        job.outcomes = [
            Outcome({"event_id": str(event_id_for(client, r.metadata.user_id, key))}, key)
            for r, key in zip(requests, given, strict=True)
        ]
        # A record that misses the deadline stays queued and is still published; the client's retry with the
        # same idempotency key carries the same event id, which the consumer stores once. A transaction not
        # scored by then is never published.
        job.activities = [_activity(r, o.body["event_id"]) for r, o in zip(requests, job.outcomes, strict=True)]
        job.deadline = loop.call_later(self.settings.publish_timeout_s, self._finish, job, True)
        self.behaviour.submit(job.activities, functools.partial(self._looked, job))
        return await job.done

    def _looked(self, job: _Job, looked: Looked) -> None:
        if job.done.done():  # the client went away, or the deadline passed first
            return
        job.looked = looked
        job.behaviour = _behaviour_matrix(job.looked, job.activities)
        requests = job.requests
        raw = np.stack([r.data for r in requests]) if len(requests) > 1 else requests[0].data[None, :]
        # The scorer's layout (MODEL_INPUTS): each model reads the columns its manifest names.
        job.matrix = matrix = np.hstack([raw, job.behaviour])
        self.batcher.submit(matrix).add_done_callback(functools.partial(self._scored, job))

    def _scored(self, job: _Job, scored: asyncio.Future[Scores]) -> None:
        if job.done.done():  # the client went away, or the deadline passed first
            return
        if (error := scored.exception()) is not None:
            if job.deadline is not None:
                job.deadline.cancel()
            job.done.set_exception(error)
            return
        scores = scored.result()
        job.scored_at = time.perf_counter()
        looked, behaviour_matrix = job.looked, job.behaviour
        assert looked is not None  # scoring starts once the behaviour features are known
        assert behaviour_matrix is not None
        policy = self.policy.policy  # one version for the whole batch
        skipped: list[Verdict] = []
        now = time.time()
        for i, (request, outcome) in enumerate(zip(job.requests, job.outcomes, strict=True)):
            proba, anomaly = float(scores.fraud_proba[i]), float(scores.anomaly[i])
            model_decision = DECISIONS[scores.decision[i]]
            behaviour = _by_name(behaviour_matrix[i])
            explained = scores.explanations.get(i)
            amount = job.activities[i].amount
            reason = model_reason(model_decision, proba, amount, anomaly, scores, explained)
            if policy.active:
                activity = job.activities[i]
                values = facts(request, activity, proba, anomaly, model_decision, behaviour)
                verdict = policy.decide(values, identities(activity), reason, now)
                if verdict.failed_rules or verdict.unevaluated_rules:
                    skipped.append(verdict)
            else:
                verdict = Verdict(model_decision, "model", [reason])
            self._decision_counters[verdict.decision].inc()
            self.metrics.child(self.metrics.decided_by, verdict.decided_by, verdict.decision).inc()
            body = outcome.body
            body["anomaly_detector"] = {"score": anomaly}
            body["fraud_classifier"] = {"pred_proba": proba, "prediction": int(verdict.decision == "decline")}
            body["decision"] = verdict.decision
            body["decided_by"] = verdict.decided_by
            body["reasons"] = verdict.reasons
            body["model_version"] = scores.model_version
            body["features_degraded"] = looked.degraded
            try:
                ack = self.producer.publish(_event(request, body, job.received_at, behaviour), request.metadata.user_id)
            except KeyBacklogFull:
                outcome.unavailable = "user_backlog_full"
                continue
            except BufferFull:
                outcome.unavailable = "buffer_full"
                continue
            except PublishError:
                outcome.unavailable = "rejected"
                continue
            ack.add_done_callback(functools.partial(self._published, job.minute))
            if self._ack:
                job.waiting += 1
                ack.add_done_callback(functools.partial(self._acknowledged, job, outcome))
        if skipped:
            self._count_rules(skipped)
        self._shadow(job, scores)
        if not job.waiting:
            self._finish(job)

    def _shadow(self, job: _Job, scores: Scores) -> None:
        """The challenger scores what was published (an event refused by the stream has nothing to join)."""
        if self.shadow.scorer.challenger is None or job.matrix is None:
            return
        published = [i for i, o in enumerate(job.outcomes) if o.unavailable is None]
        event_ids = [job.outcomes[i].body["event_id"] for i in published]
        if len(published) == len(job.outcomes):
            self.shadow.add(job.matrix, event_ids, scores)
        elif published:
            self.shadow.add(job.matrix[published], event_ids, scores.take(published))

    def _count_rules(self, verdicts: list[Verdict]) -> None:
        """Rules skipped in a batch, counted once per rule (a counter's increment takes a lock)."""
        for metric, rules in (
            (self.metrics.rule_failures, Counter(r for v in verdicts for r in v.failed_rules)),
            (self.metrics.rule_unevaluated, Counter(r for v in verdicts for r in v.unevaluated_rules)),
        ):
            for rule, count in rules.items():
                self.metrics.child(metric, rule).inc(count)

    def _published(self, minute: int, result: asyncio.Future[PutResult]) -> None:
        if not result.cancelled() and result.exception() is None:
            self.tally.published(minute)

    def _acknowledged(self, job: _Job, outcome: Outcome, result: asyncio.Future[PutResult]) -> None:
        if job.done.done():
            return
        if result.exception() is not None:
            outcome.unavailable = "rejected"
        job.waiting -= 1
        outcome.acked = True
        if job.waiting == 0:
            self._finish(job)

    def _finish(self, job: _Job, late: bool = False) -> None:
        if job.done.done():
            return
        if job.deadline is not None:
            job.deadline.cancel()
        finished = time.perf_counter()
        scored_at = job.scored_at or finished
        timing = {
            "total_ms": round((finished - job.started) * 1000, 3),
            "scoring_ms": round((scored_at - job.started) * 1000, 3),
            "publish_ms": round((finished - scored_at) * 1000, 3),
        }
        reason = "publish_timeout" if job.scored_at else "scoring_timeout"
        unavailable = 0
        for outcome in job.outcomes:
            if late and not outcome.acked and outcome.unavailable is None:
                outcome.unavailable = reason
            outcome.body["timing"] = timing
            if outcome.unavailable:
                unavailable += 1
                self.metrics.rejected.labels(outcome.unavailable).inc()
        self.tally.answered(job.minute, len(job.outcomes), unavailable)
        job.done.set_result(job.outcomes)
