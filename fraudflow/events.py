"""The scored event: the Kinesis record body the API writes and the consumer reads (schema version 1).

A superset of the reference design's record (timestamp, user_id, source, fraud_prediction, fraud_proba,
anomaly_score, device_info, ip_address, geo), documented in docs/events.md. Producers encode with orjson
from plain values (hot path); readers validate with `ScoredEvent`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fraudflow.data.columns import N_FEATURES

SCHEMA_VERSION = 1
# Event ids derived from a client's idempotency key: the same key always names the same event.
EVENT_NAMESPACE = uuid.UUID("5b0b8a5e-2f43-4c1e-9f7e-8d6f6c1c9a11")


_ZERO = timedelta(0)


def event_id_for(idempotency_key: str | None) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, idempotency_key) if idempotency_key else uuid.uuid4()


def as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (the reference client sends naive times)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset() == _ZERO:
        return value  # already UTC: astimezone would cost more than the whole rest of the conversion
    return value.astimezone(UTC)


class DeviceInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    device_type: str | None = Field(None, max_length=64)
    os_version: str | None = Field(None, max_length=64)
    app_version: str | None = Field(None, max_length=64)


class Geo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    country: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=128)
    city: str | None = Field(None, max_length=128)
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)


class ScoredEvent(BaseModel):
    """Schema version 1 of the record body; unknown fields are ignored so readers tolerate additions."""

    model_config = ConfigDict(extra="ignore")

    schema_version: Literal[1]
    event_id: uuid.UUID
    timestamp: datetime
    received_at: datetime
    user_id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=64)
    fraud_prediction: Literal[0, 1]
    fraud_proba: float = Field(ge=0, le=1)
    anomaly_score: float = Field(ge=0, le=1)
    decision: Literal["approve", "review", "decline"]
    model_version: str = Field(min_length=1, max_length=64)
    amount: float
    features: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    device_info: DeviceInfo | None = None
    ip_address: str | None = Field(None, max_length=64)
    geo: Geo | None = None

    @field_validator("timestamp", "received_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)


def encode_event(fields: dict[str, Any]) -> bytes:
    """Serialise a record body (already shaped like ScoredEvent) without a validation pass."""
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z)
