"""Kinesis producer: records gathered into PutRecords calls, retried per record, ordered per partition key.

Ordering: a partition key has at most one record in flight. Later records of the same key wait in the
buffer until the earlier one is acknowledged, and a failed record goes back to the front, so a retry can
never overtake or be overtaken. Different keys share calls, so throughput comes from key diversity
(`user_id` in practice), and several calls may be in flight at once.
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
from fraudflow.logging import get_logger
from fraudflow.retry import backoff_delay

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
_SCAN_LIMIT = 10 * MAX_RECORDS_PER_CALL  # bounds the work of one batch build when a hot key blocks the queue
# Errors about the request itself: retrying cannot help.
_PERMANENT = {"ValidationException", "InvalidArgumentException"}

log = get_logger(__name__)


class BufferFull(RuntimeError):
    """The producer's buffer is at capacity (or closed); the caller should shed load (HTTP 503)."""


class PublishError(RuntimeError):
    """Kinesis rejected the record for good (not a transient failure)."""


@dataclass(frozen=True)
class PutResult:
    shard_id: str
    sequence_number: str


@dataclass
class _Entry:
    data: bytes
    key: str
    future: asyncio.Future[PutResult]
    attempts: int = 0
    not_before: float = 0.0
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data) + len(self.key.encode())


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
        max_in_flight: int = 2,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 2.0,
        close_timeout_s: float = 10.0,
        hooks: ProducerHooks | None = None,
    ) -> None:
        self._client = client
        self.stream = stream
        self.linger_s = linger_s
        self.max_buffer = max_buffer
        self.max_in_flight = max_in_flight
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.hooks = hooks or ProducerHooks()
        self._pending: deque[_Entry] = deque()
        self._in_flight_keys: set[str] = set()
        self._in_flight_records = 0
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
        return len(self._pending) + self._in_flight_records

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="kinesis-producer")

    def publish(self, data: bytes, partition_key: str) -> asyncio.Future[PutResult]:
        """Queue one record; the future resolves when Kinesis acknowledges it."""
        if self._closed:
            raise BufferFull("producer is shutting down")
        if self.depth >= self.max_buffer:
            raise BufferFull(f"publish buffer is full ({self.max_buffer} records)")
        entry = _Entry(data, partition_key, asyncio.get_running_loop().create_future())
        if entry.size > MAX_RECORD_BYTES:
            raise PublishError(f"record of {entry.size} bytes exceeds the Kinesis limit of {MAX_RECORD_BYTES}")
        self._pending.append(entry)
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

    def _take_batch(self, now: float) -> tuple[list[_Entry], float | None]:
        """The next call's records: oldest first, one per key, none of a key already in flight."""
        batch: list[_Entry] = []
        size = 0
        blocked = set(self._in_flight_keys)
        kept: deque[_Entry] = deque()
        next_retry: float | None = None
        scanned = 0
        while self._pending and len(batch) < MAX_RECORDS_PER_CALL and scanned < _SCAN_LIMIT:
            entry = self._pending.popleft()
            scanned += 1
            if entry.key in blocked or size + entry.size > MAX_BYTES_PER_CALL:
                kept.append(entry)
            elif entry.not_before > now:
                kept.append(entry)
                next_retry = entry.not_before if next_retry is None else min(next_retry, entry.not_before)
            else:
                batch.append(entry)
                size += entry.size
            blocked.add(entry.key)
        self._pending.extendleft(reversed(kept))
        return batch, next_retry

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.linger_s and len(self._pending) < MAX_RECORDS_PER_CALL:
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

    def _dispatch(self, batch: list[_Entry]) -> None:
        # Book the keys as in flight before the next batch is built, not when the task first runs.
        keys = {entry.key for entry in batch}
        self._in_flight_keys |= keys
        self._in_flight_records += len(batch)
        self._calls += 1
        task = asyncio.create_task(self._send(batch, keys))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[_Entry], keys: set[str]) -> None:
        retry: list[_Entry] = []
        started = time.perf_counter()
        try:
            response = await self._client.put_records(
                StreamName=self.stream, Records=[{"Data": e.data, "PartitionKey": e.key} for e in batch]
            )
            failures: dict[str, int] = {}
            for entry, result in zip(batch, response["Records"], strict=True):
                if "ErrorCode" in result:
                    failures[result["ErrorCode"]] = failures.get(result["ErrorCode"], 0) + 1
                    retry.append(entry)
                elif not entry.future.done():
                    entry.future.set_result(PutResult(result["ShardId"], result["SequenceNumber"]))
            for reason, count in failures.items():
                self.hooks.on_failure(reason, count)
            self.hooks.on_call(time.perf_counter() - started, len(batch), len(retry))
        except ClientError as error:
            code = error_code(error) or "ClientError"
            self.hooks.on_failure(code, len(batch))
            if code in _PERMANENT:
                log.error("kinesis rejected records for good", code=code, records=len(batch))
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(PublishError(code))
            else:
                retry = batch
        except (BotoCoreError, OSError, TimeoutError) as error:
            self.hooks.on_failure(type(error).__name__, len(batch))
            retry = batch
        except Exception as error:  # an unexpected transport error must not lose accepted records
            log.exception("unexpected error from put_records", error=type(error).__name__)
            self.hooks.on_failure(type(error).__name__, len(batch))
            retry = batch
        except BaseException:
            retry = batch  # cancelled at shutdown: keep the records accounted for
            raise
        finally:
            self._finish(batch, keys, retry)

    def _finish(self, batch: list[_Entry], keys: set[str], retry: list[_Entry]) -> None:
        if retry:
            now = asyncio.get_running_loop().time()
            for entry in retry:
                entry.attempts += 1
                entry.not_before = now + backoff_delay(entry.attempts, self.backoff_base_s, self.backoff_cap_s)
            self._pending.extendleft(reversed(retry))
            log.warning("kinesis put failed, retrying", records=len(retry), attempts=retry[0].attempts)
        self._in_flight_keys -= keys
        self._in_flight_records -= len(batch)
        self._calls -= 1
        self._wakeup.set()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
