"""The scored event: the Kinesis record body the API writes and the consumer reads (schema version 3).

A superset of the reference design's record (timestamp, user_id, source, fraud_prediction, fraud_proba,
anomaly_score, device_info, ip_address, geo), documented in docs/events.md. Producers encode with orjson
from plain values (hot path, `build_event`); readers validate with `ScoredEvent`.

The field types below are also what the API accepts: one definition of what `fraud_predictions` can hold
(no NUL in text, floats within float32, times that have a UTC equivalent), so a value the API answers 200
for can always be stored, and a record from any other producer that cannot be stored is dead-lettered.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from fraudflow.data.columns import N_FEATURES

# 2 added behaviour, features_degraded and device_info.device_id; 3 decided_by and reasons. Readers take 1 to 3.
SCHEMA_VERSION = 3
# Event ids derived from a client's idempotency key: the same key always names the same event.
EVENT_NAMESPACE = uuid.UUID("5b0b8a5e-2f43-4c1e-9f7e-8d6f6c1c9a11")
FLOAT32_MAX = 3.4028234663852886e38
IP_ADDRESS_MAX_LENGTH = 64

_ZERO = timedelta(0)


def event_id_for(client: str, user_id: str, idempotency_key: str) -> uuid.UUID:
    """The event id of a payment: the same key from the same API client for the same user is the same event;
    two clients, or two users, that happen to use the same key are two payments."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{client}\x1f{user_id}\x1f{idempotency_key}")


def as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (the reference client sends naive times)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset() == _ZERO:
        return value  # already UTC: astimezone would cost more than the whole rest of the conversion
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise ValueError("has no UTC equivalent within years 1 to 9999") from None


def country_code(value: str | None) -> str | None:
    """A country as stored and as behaviour features compare it: trimmed, upper case, None when empty."""
    value = value.strip().upper() if value is not None else None
    return value or None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def storable_text(value: str) -> str:
    """Text for a diagnostic column (a dead letter's key, an error) that must never fail for its content."""
    return value.replace("\x00", "\ufffd")


def _iso_text(value: Any) -> Any:
    # A number would be read as epoch seconds, or as milliseconds above 2e10: ambiguous, so refused.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date and time (a string)")
    return value


def _float32(value: float) -> float:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError("must be a finite number within the 32-bit float range (|x| <= 3.4e38)")
    return value


def _ip_address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an IPv4 or IPv6 address as a string")
    if len(value) > IP_ADDRESS_MAX_LENGTH:
        raise ValueError(f"must be at most {IP_ADDRESS_MAX_LENGTH} characters")
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError("is not a valid IPv4 or IPv6 address") from None


_NO_NUL = AfterValidator(_no_nul)
ShortText = Annotated[str, Field(max_length=64), _NO_NUL]
LongText = Annotated[str, Field(max_length=128), _NO_NUL]
UserId = Annotated[str, Field(min_length=1, max_length=128), _NO_NUL]
Source = Annotated[str, Field(min_length=1, max_length=64), _NO_NUL]
Float32 = Annotated[float, AfterValidator(_float32)]
ModelVersion = Annotated[str, Field(min_length=1, max_length=64), _NO_NUL]
UtcTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(as_utc)]
IpAddress = Annotated[
    str,
    BeforeValidator(_ip_address),
    WithJsonSchema({"type": "string", "maxLength": IP_ADDRESS_MAX_LENGTH, "description": "IPv4 or IPv6"}),
]


class DeviceInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    device_id: ShortText | None = Field(
        None, description="A stable id of the device (app install or browser fingerprint): behaviour features"
    )
    device_type: ShortText | None = None
    os_version: ShortText | None = None
    app_version: ShortText | None = None


class Geo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    country: ShortText | None = None
    region: LongText | None = None
    city: LongText | None = None
    # Strict: true/false are not coordinates (numbers, integers included, are).
    latitude: float | None = Field(None, ge=-90, le=90, strict=True)
    longitude: float | None = Field(None, ge=-180, le=180, strict=True)


Decision = Literal["approve", "review", "decline"]
DecidedBy = Literal["allow_list", "deny_list", "rule", "model"]
ReasonText = Annotated[str, Field(max_length=1000), _NO_NUL]


class Contribution(BaseModel):
    """One feature's share of the model's score (log-odds), and what it was, in words."""

    model_config = ConfigDict(extra="ignore")

    feature: ShortText
    value: Float32 | None = None
    contribution: Float32
    text: ReasonText


class Reason(BaseModel):
    """Why a transaction got its decision: the list or rule that decided, or the model (with its top
    contributions when the transaction was flagged)."""

    model_config = ConfigDict(extra="ignore")

    source: DecidedBy
    text: ReasonText
    list_name: ShortText | None = None
    matched: LongText | None = None
    rule: ShortText | None = None
    version: int | None = Field(None, ge=0, le=2**31 - 1)
    action: ShortText | None = None
    decision: Decision | None = None
    fraud_proba: float | None = Field(None, ge=0, le=1)
    contributions: list[Contribution] | None = Field(None, max_length=10)


class ScoredEvent(BaseModel):
    """The record body, schema versions 1 to 3; unknown fields are ignored so readers tolerate additions."""

    model_config = ConfigDict(extra="ignore")

    schema_version: Literal[1, 2, 3]
    event_id: uuid.UUID
    timestamp: UtcTime
    received_at: UtcTime
    user_id: UserId
    source: Source
    fraud_prediction: Literal[0, 1]
    fraud_proba: float = Field(ge=0, le=1)
    anomaly_score: float = Field(ge=0, le=1)
    decision: Decision
    model_version: ModelVersion
    amount: Float32
    features: list[Float32] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    device_info: DeviceInfo | None = None
    ip_address: IpAddress | None = None
    geo: Geo | None = None
    # Version 2: the behaviour features the transaction was scored with (by name; null when unknown), and
    # whether the online store failed to give them (then all state features are null).
    behaviour: dict[Annotated[str, Field(max_length=64)], Float32 | None] | None = Field(None, max_length=64)
    features_degraded: bool | None = None
    # Version 3: what decided (a list, a rule, the model) and why, the deciding reason first.
    decided_by: DecidedBy | None = None
    reasons: list[Reason] | None = Field(None, max_length=8)


def _device(device: DeviceInfo | None) -> dict[str, Any] | None:
    if device is None:
        return None
    return {
        "device_id": device.device_id,
        "device_type": device.device_type,
        "os_version": device.os_version,
        "app_version": device.app_version,
    }


def _geo(geo: Geo | None) -> dict[str, Any] | None:
    if geo is None:
        return None
    return {
        "country": geo.country,
        "region": geo.region,
        "city": geo.city,
        "latitude": geo.latitude,
        "longitude": geo.longitude,
    }


def build_event(
    *,
    event_id: str,
    timestamp: datetime,
    received_at: datetime,
    user_id: str,
    source: str,
    fraud_prediction: int,
    fraud_proba: float,
    anomaly_score: float,
    decision: str,
    model_version: str,
    amount: float,
    features: Any,
    device_info: DeviceInfo | None,
    ip_address: str | None,
    geo: Geo | None,
    behaviour: dict[str, float | None],
    features_degraded: bool,
    decided_by: str,
    reasons: list[dict[str, Any]],
) -> bytes:
    """The record body for values already valid (the API's validated request): no second validation pass."""
    return encode_event(
        {
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id,
            "timestamp": timestamp,
            "received_at": received_at,
            "user_id": user_id,
            "source": source,
            "fraud_prediction": fraud_prediction,
            "fraud_proba": fraud_proba,
            "anomaly_score": anomaly_score,
            "decision": decision,
            "model_version": model_version,
            "amount": amount,
            "features": features,
            "device_info": _device(device_info),
            "ip_address": ip_address,
            "geo": _geo(geo),
            "behaviour": behaviour,
            "features_degraded": features_degraded,
            "decided_by": decided_by,
            "reasons": reasons,
        }
    )


def sample_event(**fields: Any) -> dict[str, Any]:
    """A valid record body with plain values, `fields` replacing any of them: the one factory that tests and
    benchmarks build events from (encode it with `encode_event`)."""
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "timestamp": now,
        "received_at": now,
        "user_id": "u1",
        "source": "test",
        "fraud_prediction": 0,
        "fraud_proba": 0.1,
        "anomaly_score": 0.2,
        "decision": "approve",
        "model_version": "test",
        "amount": 12.5,
        "features": [0.5] * N_FEATURES,
        "device_info": {"device_id": "dev-1", "device_type": "mobile", "os_version": None, "app_version": None},
        "ip_address": "10.0.0.1",
        "geo": {"country": "fr", "region": "IDF", "city": "Paris", "latitude": 1.0, "longitude": 2.0},
        "behaviour": {"user_count_1h": 1.0, "user_km_from_previous": None},
        "features_degraded": False,
        "decided_by": "model",
        "reasons": [{"source": "model", "text": "model: fraud probability 0.100", "decision": "approve"}],
    }
    return event | fields


def encode_event(fields: dict[str, Any]) -> bytes:
    """Serialise a record body (already shaped like ScoredEvent) without a validation pass."""
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z)
