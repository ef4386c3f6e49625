"""Per-shard read limits (5 GetRecords calls/s, 2 MiB/s): a token bucket for calls and one for bytes."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> None:
        """Wait until `amount` tokens are available (an amount above capacity waits for a full bucket)."""
        amount = min(amount, self.capacity)
        self._refill()
        while self._tokens < amount:
            await asyncio.sleep((amount - self._tokens) / self.rate)
            self._refill()
        self._tokens -= amount

    def charge(self, amount: float) -> None:
        """Spend tokens after the fact (bytes are known only once a page arrived); may go negative."""
        self._refill()
        self._tokens -= amount
