"""Shard sync (the KCL's ShardSyncer): the stream's shards as the lease table should know them.

ListShards runs every `shard_sync_interval_s` and at once when a shard ends: leases are tied to the stream's
identity, created for new shards (children of a reshard at TRIM_HORIZON, others at the configured position),
never for a closed shard that was read to its end, and deleted once finished and their children started, or
once their shard is gone from the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumers.config import ConsumerConfig, InitialPosition
from consumers.leases.table import TRIM_HORIZON, Lease, LeaseTable, NewShard
from fraudflow.logging import get_logger
from fraudflow.streams import stream_identity

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

log = get_logger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parent_shard_ids: list[str]
    starting_hash_key: str
    ending_hash_key: str
    ending_sequence_number: str | None  # set once the shard is closed

    @classmethod
    def from_api(cls, shard: Any) -> ShardInfo:
        parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
        return cls(
            shard["ShardId"],
            parents,
            shard["HashKeyRange"]["StartingHashKey"],
            shard["HashKeyRange"]["EndingHashKey"],
            shard["SequenceNumberRange"].get("EndingSequenceNumber"),
        )


class ShardSync:
    def __init__(self, client: KinesisClient, stream: str, table: LeaseTable, config: ConsumerConfig) -> None:
        self.client = client
        self.stream = stream
        self.table = table
        self.config = config

    async def list_shards(self) -> list[ShardInfo]:
        shards, token = [], None
        while True:
            kwargs = {"NextToken": token} if token else {"StreamName": self.stream}
            page = await self.client.list_shards(**kwargs)  # type: ignore[arg-type]
            shards += [ShardInfo.from_api(shard) for shard in page["Shards"]]
            if not (token := page.get("NextToken")):
                return shards

    async def run(self) -> dict[str, ShardInfo]:
        """Create leases for new shards; remove finished leases whose children started, and aged-out ones.
        Returns the stream's shards by id."""
        identity = await stream_identity(self.client, self.stream)
        if identity != self.table.identity and (dropped := await self.table.claim_for(identity)):
            log.warning(
                "stream recreated: leases of the earlier stream deleted, its shards start afresh",
                stream=self.stream,
                identity=identity,
                leases_deleted=dropped,
            )
        shards = await self.list_shards()
        listed = {shard.shard_id: shard for shard in shards}
        leases = {lease.shard_id: lease for lease in await self.table.all()}
        new = []
        for shard in shards:
            if shard.shard_id in leases or _consumed(shard, shards, leases):
                continue
            # Children of a reshard always start at the beginning; other shards at the configured position.
            known_parent = any(p in listed or p in leases for p in shard.parent_shard_ids)
            start = TRIM_HORIZON if known_parent else self.config.initial_position.value
            if start == InitialPosition.AT_TIMESTAMP and self.config.initial_timestamp is None:
                start = TRIM_HORIZON
            new.append(
                NewShard(shard.shard_id, shard.parent_shard_ids, shard.starting_hash_key, shard.ending_hash_key, start)
            )
        if created := await self.table.create_missing(new):
            log.info("leases created", shards=created)
        children: dict[str, list[str]] = {}
        for lease in leases.values():
            for parent in lease.parent_shard_ids:
                children.setdefault(parent, []).append(lease.shard_id)
        done = []
        for lease in leases.values():
            gone = lease.shard_id not in listed
            kids = [leases[c] for c in children.get(lease.shard_id, []) if c in leases]
            started = bool(kids) and all(k.owner is not None or k.checkpoint != TRIM_HORIZON for k in kids)
            if (lease.finished and started) or (gone and lease.owner is None):
                done.append(lease.shard_id)
        if done:
            await self.table.delete(done)
            log.info("leases cleaned up", shards=done)
        return listed


def _consumed(shard: ShardInfo, shards: list[ShardInfo], leases: dict[str, Lease]) -> bool:
    """A closed shard with a leased descendant was read to its end: its lease was cleaned up once its
    children started, and it stays listed (for the retention period on AWS) but must not be read again."""
    if shard.ending_sequence_number is None:
        return False
    children: dict[str, list[str]] = {}
    for other in shards:
        for parent in other.parent_shard_ids:
            children.setdefault(parent, []).append(other.shard_id)
    pending, seen = list(children.get(shard.shard_id, [])), set()
    while pending:
        child = pending.pop()
        if child in leases:
            return True
        if child not in seen:
            seen.add(child)
            pending += children.get(child, [])
    return False
