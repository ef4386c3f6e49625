"""Kinesis producer: records gathered into PutRecords calls, retried, ordered per partition key.

Ordering: a partition key has at most one Kinesis record in flight. A key's later records wait in its own
queue until the earlier call is acknowledged, and a failed call's records go back to the front of that queue,
so a retry can never overtake or be overtaken. Throughput of one key comes from aggregation: when a key has
several records waiting, they leave together as one KPL aggregated record (the consumer splits it), so a hot
key moves as many records per round trip as fit in `aggregate_max_bytes`, up to its shard's own limit.
Different keys share calls, and several calls may be in flight at once. Each key holds at most
`max_key_buffer` records, so one hot key cannot fill the buffer that every other key shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from fraudflow.aws import error_code
from fraudflow.kpl import OVERHEAD_BYTES, PER_RECORD_OVERHEAD_BYTES, aggregate
from fraudflow.logging import get_logger
from fraudflow.retry import backoff_delay

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
AGGREGATE_MAX_BYTES = 51_200  # the KPL's default: larger records only delay the first of them
# Errors about the request itself: retrying cannot help.
_PERMANENT = {"ValidationException", "InvalidArgumentException"}

log = get_logger(__name__)


class BufferFull(RuntimeError):
    """The producer's buffer is at capacity (or closed); the caller should shed load (HTTP 503)."""


class KeyBacklogFull(BufferFull):
    """One partition key holds its whole share of the buffer; other keys are still accepted."""


class PublishError(RuntimeError):
    """Kinesis rejected the record for good (not a transient failure)."""


@dataclass(frozen=True)
class PutResult:
    shard_id: str
    sequence_number: str


@dataclass
class _Entry:
    data: bytes
    future: asyncio.Future[PutResult]
    queued_at: float


@dataclass
class _Key:
    """One partition key's records: those waiting, in order, and those of its call in flight."""

    name: str
    waiting: deque[_Entry] = field(default_factory=deque)
    sending: list[_Entry] = field(default_factory=list)
    attempts: int = 0  # failed calls in a row; sets the backoff
    not_before: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.waiting) + len(self.sending)


@dataclass
class _Record:
    """One Kinesis record of a call: a key's entries, aggregated when there are several."""

    key: _Key
    entries: list[_Entry]
    data: bytes


@dataclass
class ProducerHooks:
    """Where the producer reports what an operator watches (Prometheus in the API)."""

    on_call: Callable[[float, int, int], None] = lambda seconds, records, failed: None
    on_failure: Callable[[str, int], None] = lambda reason, records: None


class KinesisProducer:
    def __init__(
        self,
        client: KinesisClient,
        stream: str,
        *,
        linger_s: float = 0.0,
        max_buffer: int = 20_000,
        max_key_buffer: int | None = None,
        max_in_flight: int = 2,
        aggregate_max_bytes: int = AGGREGATE_MAX_BYTES,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 2.0,
        close_timeout_s: float = 10.0,
        hooks: ProducerHooks | None = None,
    ) -> None:
        self._client = client
        self.stream = stream
        self.linger_s = linger_s
        self.max_buffer = max_buffer
        self.max_key_buffer = max_key_buffer or max_buffer
        self.max_in_flight = max_in_flight
        self.aggregate_max_bytes = aggregate_max_bytes
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.hooks = hooks or ProducerHooks()
        # Keys with records waiting or in flight, oldest first (a dict keeps insertion order).
        self._keys: dict[str, _Key] = {}
        self._depth = 0
        self._calls = 0
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._closed = False
        self.close_timeout_s = close_timeout_s
        self.undelivered = 0  # records left when the producer closed

    async def __aenter__(self) -> KinesisProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.undelivered = await self.close(self.close_timeout_s)

    @property
    def depth(self) -> int:
        """Records accepted and not yet acknowledged by Kinesis."""
        return self._depth

    def oldest_age_s(self) -> float:
        """How long the oldest record not yet acknowledged has waited (0 when there is none)."""
        heads = [key.sending[0] if key.sending else key.waiting[0] for key in self._keys.values() if key.depth]
        if not heads:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - min(entry.queued_at for entry in heads))

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="kinesis-producer")

    def publish(self, data: bytes, partition_key: str) -> asyncio.Future[PutResult]:
        """Queue one record; the future resolves when Kinesis acknowledges it."""
        if self._closed:
            raise BufferFull("producer is shutting down")
        if self._depth >= self.max_buffer:
            raise BufferFull(f"publish buffer is full ({self.max_buffer} records)")
        size = len(data) + len(partition_key.encode())
        if size > MAX_RECORD_BYTES:
            raise PublishError(f"record of {size} bytes exceeds the Kinesis limit of {MAX_RECORD_BYTES}")
        key = self._keys.get(partition_key)
        if key is None:
            key = self._keys[partition_key] = _Key(partition_key)
        elif key.depth >= self.max_key_buffer:
            raise KeyBacklogFull(f"partition key has {key.depth} records waiting (limit {self.max_key_buffer})")
        loop = asyncio.get_running_loop()
        entry = _Entry(data, loop.create_future(), loop.time())
        key.waiting.append(entry)
        self._depth += 1
        self._wakeup.set()
        return entry.future

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every accepted record is acknowledged; False if the deadline passed first."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.depth == 0), timeout_s)
            except TimeoutError:
                return False
        return True

    async def close(self, timeout_s: float = 10.0) -> int:
        """Stop accepting, flush for up to `timeout_s`, stop. Returns how many records were not delivered."""
        self._closed = True
        flushed = await self.flush(timeout_s)
        left = self.depth
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if not flushed:
            log.error("producer closed with undelivered records", records=left, stream=self.stream)
        return left

    def _record(self, key: _Key) -> _Record:
        """The key's next Kinesis record: its first waiting entry, plus as many more as fit in one aggregate."""
        first = key.waiting.popleft()
        entries = [first]
        size = OVERHEAD_BYTES + len(key.name.encode()) + PER_RECORD_OVERHEAD_BYTES + len(first.data)
        while key.waiting:
            grown = size + PER_RECORD_OVERHEAD_BYTES + len(key.waiting[0].data)
            if grown > self.aggregate_max_bytes:
                break
            entries.append(key.waiting.popleft())
            size = grown
        key.sending = entries
        if len(entries) == 1:
            return _Record(key, entries, first.data)
        return _Record(key, entries, aggregate([(key.name, entry.data) for entry in entries]))

    def _take_batch(self, now: float) -> tuple[list[_Record], float | None]:
        """The next call's records: keys oldest first, one record per key, none of a key already in flight."""
        batch: list[_Record] = []
        size = 0
        next_retry: float | None = None
        for key in self._keys.values():
            if key.sending or not key.waiting:
                continue
            if key.not_before > now:
                next_retry = key.not_before if next_retry is None else min(next_retry, key.not_before)
                continue
            if size + len(key.waiting[0].data) + len(key.name) > MAX_BYTES_PER_CALL:
                break
            record = self._record(key)
            batch.append(record)
            size += len(record.data) + len(key.name)
            if len(batch) == MAX_RECORDS_PER_CALL or size >= MAX_BYTES_PER_CALL - self.aggregate_max_bytes:
                break
        return batch, next_retry

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._depth:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.linger_s and len(self._keys) < MAX_RECORDS_PER_CALL:
                await asyncio.sleep(self.linger_s)
            next_retry = None
            while self._calls < self.max_in_flight:
                batch, next_retry = self._take_batch(loop.time())
                if not batch:
                    break
                self._dispatch(batch)
            self._wakeup.clear()
            timeout = None if next_retry is None else max(0.0, next_retry - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _dispatch(self, batch: list[_Record]) -> None:
        self._calls += 1
        task = asyncio.create_task(self._send(batch))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[_Record]) -> None:
        failed: list[_Record] = []
        started = time.perf_counter()
        try:
            response = await self._client.put_records(
                StreamName=self.stream, Records=[{"Data": r.data, "PartitionKey": r.key.name} for r in batch]
            )
            failures: dict[str, int] = {}
            for record, result in zip(batch, response["Records"], strict=True):
                if "ErrorCode" in result:
                    failures[result["ErrorCode"]] = failures.get(result["ErrorCode"], 0) + len(record.entries)
                    failed.append(record)
                else:
                    acknowledged = PutResult(result["ShardId"], result["SequenceNumber"])
                    for entry in record.entries:
                        if not entry.future.done():
                            entry.future.set_result(acknowledged)
            for reason, count in failures.items():
                self.hooks.on_failure(reason, count)
            self.hooks.on_call(time.perf_counter() - started, _entries(batch), _entries(failed))
        except ClientError as error:
            code = error_code(error) or "ClientError"
            self.hooks.on_failure(code, _entries(batch))
            if code in _PERMANENT:
                log.error("kinesis rejected records for good", code=code, records=_entries(batch))
                for record in batch:
                    for entry in record.entries:
                        if not entry.future.done():
                            entry.future.set_exception(PublishError(code))
            else:
                failed = batch
        except (BotoCoreError, OSError, TimeoutError) as error:
            self.hooks.on_failure(type(error).__name__, _entries(batch))
            failed = batch
        except Exception as error:  # an unexpected transport error must not lose accepted records
            log.exception("unexpected error from put_records", error=type(error).__name__)
            self.hooks.on_failure(type(error).__name__, _entries(batch))
            failed = batch
        except BaseException:
            failed = batch  # cancelled at shutdown: keep the records accounted for
            raise
        finally:
            self._finish(batch, failed)

    def _finish(self, batch: list[_Record], failed: list[_Record]) -> None:
        now = asyncio.get_running_loop().time()
        retried = {id(record) for record in failed}
        for record in batch:
            key = record.key
            key.sending = []
            if id(record) in retried:
                key.waiting.extendleft(reversed(record.entries))
                key.attempts += 1
                key.not_before = now + backoff_delay(key.attempts, self.backoff_base_s, self.backoff_cap_s)
            else:
                key.attempts = 0
                self._depth -= len(record.entries)
                if not key.waiting:
                    del self._keys[key.name]
        if failed:
            log.warning("kinesis put failed, retrying", records=_entries(failed), calls_failed=failed[0].key.attempts)
        self._calls -= 1
        self._wakeup.set()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _entries(records: list[_Record]) -> int:
    return sum(len(record.entries) for record in records)
