"""Jittered exponential backoff, shared by the producer and the consumer."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base_s` up to `cap_s`, with jitter."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))


class Backoff:
    """Counts consecutive failures; a success resets it."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return backoff_delay(self.failures, self.base_s, self.cap_s)

    def reset(self) -> None:
        self.failures = 0
