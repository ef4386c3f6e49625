"""Renewer and taker: which leases this worker holds.

Expiry is by counter, not by clock: a lease is free when its owner is empty, or when its counter has not
moved for `failover_s` on this worker's monotonic clock. Each worker aims at ceil(active leases / live
workers); it takes free leases first and, when there are none, steals at most one lease per round from the
most loaded worker. Workers are whoever owns a live lease, plus this one.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter

from consumers.config import ConsumerConfig
from consumers.leases.table import Lease, LeaseTable


class LeaseCoordinator:
    def __init__(self, table: LeaseTable, worker_id: str, config: ConsumerConfig) -> None:
        self.table = table
        self.worker_id = worker_id
        self.config = config
        self.held: dict[str, Lease] = {}
        self.workers_seen = 1
        self._seen: dict[str, tuple[int, float]] = {}

    def _observe(self, leases: list[Lease]) -> None:
        now = time.monotonic()
        for lease in leases:
            previous = self._seen.get(lease.shard_id)
            if previous is None or previous[0] != lease.lease_counter:
                self._seen[lease.shard_id] = (lease.lease_counter, now)

    def _expired(self, lease: Lease, now: float) -> bool:
        if lease.owner is None:
            return True
        if lease.owner == self.worker_id:
            return lease.shard_id not in self.held  # ours from a previous life of this worker id
        return now - self._seen[lease.shard_id][1] >= self.config.failover_s

    async def renew(self) -> list[Lease]:
        """Renew every held lease; returns the ones lost (taken by another worker)."""
        lost = []
        for shard_id, lease in list(self.held.items()):
            renewed = await self.table.renew(lease)
            if shard_id not in self.held:
                continue  # forgotten while renewing: its consumer ended or found the lease lost
            if renewed is None:
                lost.append(self.held.pop(shard_id))
            else:
                self.held[shard_id] = renewed
        return lost

    async def take(self, steal: bool) -> list[Lease]:
        """One taker round; returns the leases newly taken."""
        leases = await self.table.all()
        self._observe(leases)
        now = time.monotonic()
        active = [lease for lease in leases if not lease.finished]
        free = [lease for lease in active if self._expired(lease, now) and lease.shard_id not in self.held]
        owners = Counter(lease.owner for lease in active if lease.owner and lease not in free)
        owners[self.worker_id] = len(self.held)
        self.workers_seen = len(owners)
        target = math.ceil(len(active) / len(owners)) if active else 0
        wanted = target - len(self.held)
        taken: list[Lease] = []
        random.shuffle(free)  # workers starting together should not all race for the same shard
        for lease in free[: max(wanted, 0)]:
            if (got := await self.table.take(lease.shard_id, self.worker_id, lease.lease_counter)) is not None:
                taken.append(got)
        wanted -= len(taken)
        if steal and wanted > 0 and not free:
            victim, count = max(
                ((o, c) for o, c in owners.items() if o != self.worker_id), key=lambda item: item[1], default=(None, 0)
            )
            if victim is not None and count > target:
                lease = random.choice([lease for lease in active if lease.owner == victim])
                if (got := await self.table.take(lease.shard_id, self.worker_id, lease.lease_counter)) is not None:
                    taken.append(got)
        for lease in taken:
            self.held[lease.shard_id] = lease
        return taken

    def forget(self, shard_id: str) -> None:
        self.held.pop(shard_id, None)
