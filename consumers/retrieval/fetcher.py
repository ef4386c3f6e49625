"""One shard's GetRecords loop: iterators, read limits, retries, iterator renewal and the end of the shard."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from consumers.config import ConsumerConfig, InitialPosition
from consumers.leases.shard_sync import ShardInfo
from consumers.leases.table import SHARD_END
from consumers.retrieval.throttle import TokenBucket
from fraudflow.aws import error_code
from fraudflow.kpl import AggregationError, UserRecord, deaggregate
from fraudflow.logging import get_logger
from fraudflow.retry import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

log = get_logger(__name__)
_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ThrottlingException",
}


@dataclass(frozen=True)
class Record:
    sequence_number: str
    sub_sequence: int
    partition_key: str
    data: bytes
    arrived_at: datetime | None
    error: str | None = None  # the record could not be de-aggregated: it goes to the dead letters as is


@dataclass
class Page:
    records: list[Record]
    last_sequence_number: str | None
    millis_behind: int | None
    shard_end: bool = False
    child_shard_ids: list[str] = field(default_factory=list)
    bytes: int = 0


def is_sequence_number(checkpoint: str) -> bool:
    return checkpoint.isdigit()


class ShardFetcher:
    def __init__(
        self,
        client: KinesisClient,
        stream: str,
        shard: ShardInfo,
        config: ConsumerConfig,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.shard = shard
        self.config = config
        self.on_retry = on_retry or (lambda reason: None)
        self._calls = TokenBucket(config.reads_per_second, config.reads_per_second)
        self._bytes = TokenBucket(config.read_bytes_per_second, config.read_bytes_per_second)
        self._backoff = Backoff(config.backoff_base_s, config.backoff_cap_s)
        self._iterator: str | None = None
        self._position = InitialPosition.TRIM_HORIZON.value
        self.last_sequence_number: str | None = None
        self.millis_behind: int | None = None

    def seek(self, checkpoint: str) -> None:
        """Start after `checkpoint` (a sequence number) or at a sentinel position."""
        if checkpoint == SHARD_END:
            raise ValueError("a finished shard has nothing to fetch")
        self._position = checkpoint
        self._iterator = None

    async def _new_iterator(self) -> str:
        args: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard.shard_id}
        start = self.last_sequence_number or self._position
        if is_sequence_number(start):
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=start)
        elif start == InitialPosition.AT_TIMESTAMP and self.config.initial_timestamp is not None:
            args.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=self.config.initial_timestamp)
        else:
            args.update(ShardIteratorType=start if start != InitialPosition.AT_TIMESTAMP else "TRIM_HORIZON")
        return (await self.client.get_shard_iterator(**args))["ShardIterator"]

    async def fetch(self) -> Page:
        """One page of records; retries transient failures (with backoff) until it gets one."""
        while True:
            try:
                if self._iterator is None:
                    self._iterator = await self._new_iterator()
                await self._calls.take()
                await self._bytes.take(1)  # waits while a previous large page overdrew the byte budget
                response = await self.client.get_records(
                    ShardIterator=self._iterator, Limit=self.config.get_records_limit
                )
            except ClientError as error:
                code = error_code(error)
                if code == "ExpiredIteratorException":
                    self.on_retry(code)  # counted in fraudflow_consumer_retries{reason="ExpiredIteratorException"}
                    log.info("iterator expired, renewing", shard=self.shard.shard_id, after=self.last_sequence_number)
                    self._iterator = None  # renew from the last delivered (or checkpointed) position
                    continue
                status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code not in _RETRYABLE and status < 500:
                    raise
                await self._wait(code or str(status))
                continue
            except (BotoCoreError, OSError, TimeoutError) as error:
                await self._wait(type(error).__name__)
                continue
            self._backoff.reset()
            return self._page(response)

    async def _wait(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        self.on_retry(reason)
        log.warning(
            "get_records failed, backing off", shard=self.shard.shard_id, reason=reason, delay_s=round(delay, 2)
        )
        await asyncio.sleep(delay)

    def _page(self, response: Any) -> Page:
        records: list[Record] = []
        size = 0
        for raw in response["Records"]:
            size += len(raw["Data"])
            arrived = raw.get("ApproximateArrivalTimestamp")
            try:
                users = deaggregate(raw["Data"], raw["PartitionKey"])
            except AggregationError as error:
                records.append(
                    Record(
                        raw["SequenceNumber"],
                        0,
                        raw["PartitionKey"],
                        raw["Data"],
                        arrived,
                        f"KPL aggregated record cannot be decoded: {error}",
                    )
                )
                continue
            records += [_record(raw["SequenceNumber"], user, arrived) for user in users]
        self._bytes.charge(size)
        if response["Records"]:
            self.last_sequence_number = response["Records"][-1]["SequenceNumber"]
        self.millis_behind = response.get("MillisBehindLatest", self.millis_behind)
        self._iterator = response.get("NextShardIterator")
        children = [c["ShardId"] for c in response.get("ChildShards") or []]
        # Real Kinesis (and kinesis-local) end a closed shard with no NextShardIterator. moto keeps handing
        # out iterators, so a closed shard that returns an empty, caught-up page has ended too.
        ended = self._iterator is None or (
            self.shard.ending_sequence_number is not None
            and not response["Records"]
            and response.get("MillisBehindLatest", 0) == 0
        )
        return Page(records, self.last_sequence_number, self.millis_behind, ended, children, size)


def _record(sequence_number: str, user: UserRecord, arrived: datetime | None) -> Record:
    return Record(sequence_number, user.sub_sequence, user.partition_key, user.data, arrived)
