"""The API's heartbeat record: what each API process answered and published, per minute of receipt.

It travels on the event stream with the scored events (documented in docs/events.md), so it follows the
pipeline's one direction (API -> Kinesis -> consumer -> PostgreSQL -> dashboard) and counts every API process
wherever it runs. The dashboard compares the records published in a minute with the rows stored for it: a gap
that stays is a record lost or stuck between the API and the database, which no single component can see.

Counts are cumulative per minute, so a heartbeat read twice, or an older one read after a newer one, changes
nothing: the consumer keeps the largest value of each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from fraudflow.events import LongText, UtcTime

KIND = "api_heartbeat"
MINUTES_KEPT = 10  # each heartbeat repeats the last ten minutes: a lost one is made up by the next
Count = Annotated[int, Field(ge=0, le=2**62)]


class MinuteCounts(BaseModel):
    model_config = ConfigDict(extra="ignore")

    minute: UtcTime  # the minute the transactions were received in (their rows' received_at)
    answered: Count  # transactions answered (200 or 503)
    published: Count  # of which Kinesis acknowledged the record
    unavailable: Count  # of which answered 503


class ApiHeartbeat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["api_heartbeat"]
    schema_version: Literal[1]
    process: LongText  # host and process id: one API process
    started_at: UtcTime
    sent_at: UtcTime
    minutes: list[MinuteCounts] = Field(max_length=60)


def minute_of(moment: datetime) -> int:
    """The minute a time falls in, as minutes since the epoch."""
    return int(moment.timestamp()) // 60


class Tally:
    """One API process's counts by minute of receipt, kept for the last MINUTES_KEPT minutes."""

    def __init__(self, process: str, started_at: datetime) -> None:
        self.process = process
        self.started_at = started_at
        self._minutes: dict[int, list[int]] = {}  # minute -> [answered, published, unavailable]

    def _counts(self, minute: int) -> list[int]:
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = [0, 0, 0]
            for old in [m for m in self._minutes if m <= minute - MINUTES_KEPT]:
                del self._minutes[old]
        return counts

    def answered(self, minute: int, transactions: int, unavailable: int) -> None:
        counts = self._counts(minute)
        counts[0] += transactions
        counts[2] += unavailable

    def published(self, minute: int) -> None:
        self._counts(minute)[1] += 1

    def heartbeat(self, now: datetime | None = None) -> bytes:
        """The record body to publish now."""
        now = now or datetime.now(UTC)
        self._counts(minute_of(now))  # always this minute, even idle: the heartbeat says the process is alive
        first = minute_of(now) - MINUTES_KEPT + 1
        return orjson.dumps(
            {
                "kind": KIND,
                "schema_version": 1,
                "process": self.process,
                "started_at": self.started_at,
                "sent_at": now,
                "minutes": [
                    {
                        "minute": datetime.fromtimestamp(minute * 60, UTC),
                        "answered": counts[0],
                        "published": counts[1],
                        "unavailable": counts[2],
                    }
                    for minute, counts in sorted(self._minutes.items())
                    if minute >= first
                ],
            },
            option=orjson.OPT_UTC_Z,
        )


KEY_PREFIX = "fraudflow-api-heartbeat/"


def heartbeat_key(process: str) -> str:
    """The partition key of a process's heartbeats (any shard will do; one key keeps them in order)."""
    return KEY_PREFIX + process
