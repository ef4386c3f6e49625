"""Replay transactions against a scoring API at a controlled rate, with retries and a live progress line."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import numpy as np
import numpy.typing as npt

from fraudflow.data.dataset import History
from fraudflow.simulation.chargebacks import Chargebacks
from fraudflow.simulation.population import User, metadata


@dataclass
class Stats:
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"sent {self.sent}  ok {self.ok}  errors {errors}  rate {self.sent / elapsed:.1f}/s  "
            f"p50 {self.percentile(50):.1f} ms  p99 {self.percentile(99):.1f} ms"
        )


@dataclass(frozen=True)
class Plan:
    rate: float  # events per second; 0 = as fast as the concurrency allows
    poisson: bool
    concurrency: int
    max_requests: int | None
    duration_s: float | None
    retries: int = 3
    timeout_s: float = 10.0


class Replayer:
    def __init__(
        self,
        url: str,
        rows: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int8],
        people: list[User],
        plan: Plan,
        *,
        api_key: str | None = None,
        seed: int = 0,
        record: IO[str] | None = None,
        history: History | None = None,
        chargebacks: Chargebacks | None = None,
    ) -> None:
        self.url = url
        self.rows, self.labels = rows, labels
        self.history = history
        # A history keeps its event times, moved to start now: the gaps between a user's payments, which the
        # behaviour features measure, are the history's whatever the replay rate.
        self.time_shift = 0.0 if history is None else time.time() - float(history.timestamp[0])
        self.people = people
        self.plan = plan
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.rng = random.Random(seed)
        self.record = record
        self.chargebacks = chargebacks
        self.stats = Stats()

    def _body(self, index: int) -> dict[str, Any]:
        row = self.rows[index % len(self.rows)]
        if self.history is not None:
            meta = self._recorded(index % len(self.rows))
        else:
            is_fraud = bool(self.labels[index % len(self.labels)])
            meta = metadata(self.rng.choice(self.people), is_fraud, self.rng)
        meta["transaction_id"] = str(uuid.uuid4())  # the idempotency key: retries reuse it
        return {"metadata": meta, "data": ", ".join(f"{v:.6g}" for v in row)}

    def _recorded(self, i: int) -> dict[str, Any]:
        """The metadata a history recorded for its row i: the same user, device, IP and place."""
        history = self.history
        assert history is not None
        lat, lon = float(history.latitude[i]), float(history.longitude[i])
        return {
            "timestamp": datetime.fromtimestamp(float(history.timestamp[i]) + self.time_shift, UTC).isoformat(),
            "user_id": history.user_id[i],
            "source": "simulator",
            "device_info": {"device_id": history.device_id[i], "device_type": "mobile"},
            "ip_address": history.ip_address[i],
            "geo": {
                "country": history.country[i],
                "city": history.city[i],
                "latitude": None if lat != lat else lat,
                "longitude": None if lon != lon else lon,
            },
        }

    async def _send(self, session: aiohttp.ClientSession, body: dict[str, Any], is_fraud: bool) -> None:
        started = time.perf_counter()
        for attempt in range(self.plan.retries + 1):
            try:
                async with session.post(self.url, json=body, headers=self.headers) as response:
                    if response.status == 200:
                        answer = await response.json()
                        self.stats.ok += 1
                        if is_fraud and self.chargebacks is not None:
                            self.chargebacks.fraud_answered(answer["event_id"])
                        self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                        if self.record:
                            self.record.write(
                                json.dumps(
                                    {
                                        "event_id": answer["event_id"],
                                        "fraud_proba": answer["fraud_classifier"]["pred_proba"],
                                        "decision": answer["decision"],
                                        "answered_at": time.time(),
                                    }
                                )
                                + "\n"
                            )
                        return
                    reason = str(response.status)
                    retryable = response.status in (429, 502, 503, 504)
            except (aiohttp.ClientError, TimeoutError) as error:
                reason, retryable = type(error).__name__, True
            if not retryable or attempt == self.plan.retries:
                self.stats.errors[reason] += 1
                return
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * self.rng.uniform(0.5, 1.0))

    def _done(self, index: int, deadline: float | None) -> bool:
        return (self.plan.max_requests is not None and index >= self.plan.max_requests) or (
            deadline is not None and time.monotonic() >= deadline
        )

    async def run(self, progress: Any = None) -> Stats:
        deadline = time.monotonic() + self.plan.duration_s if self.plan.duration_s else None
        slots = asyncio.Semaphore(self.plan.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.plan.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            stop_chargebacks = asyncio.Event()
            banking = None
            if self.chargebacks is not None:
                banking = asyncio.create_task(self.chargebacks.run(session, stop_chargebacks))
            index, next_at = 0, time.monotonic()
            while not self._done(index, deadline):
                if self.plan.rate > 0:
                    gap = self.rng.expovariate(self.plan.rate) if self.plan.poisson else 1.0 / self.plan.rate
                    next_at += gap
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                await slots.acquire()
                is_fraud = bool(self.labels[index % len(self.labels)])
                task = asyncio.create_task(self._send(session, self._body(index), is_fraud))
                task.add_done_callback(lambda _t: slots.release())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.stats.sent += 1
                index += 1
                if progress is not None and index % 10 == 0:
                    progress(self.stats.line())
            if tasks:
                await asyncio.gather(*tasks)
            if banking is not None:
                stop_chargebacks.set()  # the chargebacks still pending are posted as they fall due
                await banking
        return self.stats


def load_rows(
    data: Path | None, models_test_from: float | None, seed: int, history: bool = False
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], History | None, str]:
    """Rows to replay: the test split of creditcard.csv when present, else fresh synthetic rows (a history of
    users with their habits when `history`: for models that read behaviour features), in time order.

    Only transactions at or after the models' test boundary are used, so training rows are never replayed.
    """
    from fraudflow.data.dataset import DEFAULT_PATH, DatasetError, load_creditcard
    from fraudflow.data.history import generate_history
    from fraudflow.data.synthetic import generate

    path = data or DEFAULT_PATH
    if path.exists():
        dataset, source = load_creditcard(path), str(path)
    elif history:
        dataset, source = generate_history(50_000, seed=seed + 1_000_003), "synthetic history"
    else:
        dataset, source = generate(50_000, seed=seed + 1_000_003), "synthetic"  # never the training seed
    dataset = dataset.time_ordered()
    features, labels, recorded = dataset.features, dataset.labels, dataset.history
    if models_test_from is not None:
        keep = features[:, 0] >= models_test_from
        if not keep.any():
            raise DatasetError(
                f"none of the {len(features):,} rows of {source} is at or after the served models' test boundary "
                f"(Time >= {models_test_from:g}): replaying them would replay training data; give --data with "
                "later transactions, or serve models trained on earlier ones"
            )
        features, labels = features[keep], labels[keep]
        recorded = None if recorded is None else recorded.take(np.flatnonzero(keep))
    return features, labels, recorded, source
