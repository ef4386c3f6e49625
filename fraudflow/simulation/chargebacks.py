"""The bank's side of the simulation: a share of the frauds the simulator sent come back as chargebacks,
after a delay, posted in batches to the API's `POST /labels`, so `fraudflow up` shows the loop turning:
labels on the dashboard, precision and recall of the models, a training set for `train --from-db`.

Real chargebacks take weeks; the delay here is compressed (exponential, mean `--chargeback-delay` seconds),
but kept longer than the pipeline's lag: a label for an event the consumer has not stored yet is reported
unknown by the API, and is tried again later (three times at most). A finite run waits 10 s at most for
the chargebacks still pending when its last request is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from dataclasses import dataclass

import aiohttp

ATTEMPTS = 3
BATCH = 500
SETTLE_S = 10.0  # how long a finished replay waits for the chargebacks still pending


@dataclass
class ChargebackStats:
    sent: int = 0  # stored by the API
    unknown: int = 0  # given up: the event was never stored
    refused: str | None = None  # why the API refused them all (no admin key, no database)

    def line(self) -> str:
        text = f"chargebacks sent {self.sent}"
        if self.unknown:
            text += f", {self.unknown} for unknown events"
        return text + (f" (stopped: {self.refused})" if self.refused else "")


class Chargebacks:
    def __init__(
        self,
        url: str,
        share: float,
        mean_delay_s: float,
        rng: random.Random,
        headers: dict[str, str],
        retry_after_s: float | None = None,
    ) -> None:
        self.url = url
        self.share = share
        self.mean_delay_s = mean_delay_s
        self.retry_after_s = retry_after_s if retry_after_s is not None else max(5.0, mean_delay_s / 2)
        self.rng = rng
        self.headers = headers
        self.stats = ChargebackStats()
        self._due: list[tuple[float, str, int]] = []  # (when, event id, attempt): a heap

    @property
    def pending(self) -> int:
        return len(self._due)

    def fraud_answered(self, event_id: str) -> None:
        """A fraud the API answered for: its chargeback comes, or not, later."""
        if self.stats.refused is None and self.rng.random() < self.share:
            delay = self.rng.expovariate(1 / self.mean_delay_s) if self.mean_delay_s > 0 else 0.0
            heapq.heappush(self._due, (time.monotonic() + delay, event_id, 1))

    async def run(self, session: aiohttp.ClientSession, finished: asyncio.Event) -> None:
        """Post the chargebacks as they fall due. Once `finished` is set (the replay is over), those still
        pending are posted as they fall due for SETTLE_S more at most; the rest are not sent (`pending`)."""
        settle_by: float | None = None
        while self.stats.refused is None:
            now = time.monotonic()
            if finished.is_set():
                settle_by = settle_by or now + SETTLE_S
                if not self._due or now >= settle_by:
                    return
            batch: list[tuple[str, int]] = []
            while self._due and self._due[0][0] <= now and len(batch) < BATCH:
                _, event_id, attempt = heapq.heappop(self._due)
                batch.append((event_id, attempt))
            if batch:
                await self._post(session, batch)
            elif finished.is_set():
                await asyncio.sleep(min(1.0, max(0.0, self._due[0][0] - now)))
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), 1.0)

    async def _post(self, session: aiohttp.ClientSession, batch: list[tuple[str, int]]) -> None:
        body = {
            "labels": [{"event_id": e, "label": "fraud", "note": "simulated chargeback"} for e, _ in batch],
            "source": "chargeback",
            "author": "simulated bank",
        }
        try:
            async with session.post(self.url, json=body, headers=self.headers) as response:
                if response.status in (401, 403, 404, 503):
                    self.stats.refused = f"POST /labels answered {response.status}"
                    return
                response.raise_for_status()
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            answer = {"stored": 0, "unknown_event_ids": [e for e, _ in batch]}  # tried again below
        self.stats.sent += int(answer["stored"])
        unknown = set(answer["unknown_event_ids"])
        later = time.monotonic() + self.retry_after_s
        for event_id, attempt in batch:
            if event_id not in unknown:
                continue
            if attempt < ATTEMPTS:
                heapq.heappush(self._due, (later, event_id, attempt + 1))
            else:
                self.stats.unknown += 1
