"""Readiness: models loaded and the stream ACTIVE, checked against Kinesis at most once a second."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from fraudflow.streams import stream_status

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient


class Readiness:
    def __init__(self, client: KinesisClient, stream: str, cache_s: float = 1.0) -> None:
        self.client = client
        self.stream = stream
        self.cache_s = cache_s
        self._checked_at = -1e9
        self._problem: str | None = "not checked yet"

    async def stream_problem(self) -> str | None:
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
