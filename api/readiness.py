"""Readiness: models loaded, the stream ACTIVE (checked against Kinesis at most once a second) and a publish
backlog that drains."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from fraudflow.producer import KinesisProducer
from fraudflow.streams import stream_status

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

# A buffer this full answers most requests 503 soon; a record this many publish timeouts old shows that the
# stream is not taking what the API accepts. Either way a load balancer should send traffic elsewhere.
FULL_SHARE = 0.9
STUCK_TIMEOUTS = 5


class Readiness:
    def __init__(
        self,
        client: KinesisClient,
        stream: str,
        producer: KinesisProducer,
        publish_timeout_s: float,
        cache_s: float = 1.0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.producer = producer
        self.stuck_after_s = STUCK_TIMEOUTS * publish_timeout_s
        self.cache_s = cache_s
        self._checked_at = -1e9
        self._problem: str | None = "not checked yet"

    async def problems(self) -> list[str]:
        """What stops this process from serving; empty when ready."""
        found = [] if (stream := await self._stream_problem()) is None else [stream]
        producer = self.producer
        if producer.depth >= FULL_SHARE * producer.max_buffer:
            found.append(f"publish buffer {producer.depth}/{producer.max_buffer} records full")
        if (age := producer.oldest_age_s()) > self.stuck_after_s:
            found.append(f"publish backlog not draining: oldest record waiting {age:.1f} s")
        return found

    async def _stream_problem(self) -> str | None:
        """None when the stream is ACTIVE, else what is wrong."""
        now = time.monotonic()
        if now - self._checked_at >= self.cache_s:
            try:
                status = await stream_status(self.client, self.stream)
                self._problem = None if status == "ACTIVE" else f"stream {self.stream} is {status or 'missing'}"
            except (BotoCoreError, ClientError, OSError) as error:
                self._problem = f"Kinesis unreachable: {type(error).__name__}"
            self._checked_at = now
        return self._problem
