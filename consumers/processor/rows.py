"""From Kinesis record to `fraud_predictions` row, with the reference job's transforms, or to a dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from consumers.retrieval.fetcher import Record
from fraudflow.events import ScoredEvent

COLUMNS = (
    "timestamp",
    "user_id",
    "source",
    "fraud_prediction",
    "fraud_proba",
    "anomaly_score",
    "ip_address",
    "device_type",
    "os_version",
    "app_version",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "event_id",
    "decision",
    "model_version",
    "amount",
    "features",
    "received_at",
    "shard_id",
    "sequence_number",
)


@dataclass(frozen=True)
class Rejection:
    record: Record
    reason: str


def _trimmed(value: str | None) -> str | None:
    value = value.strip() if value is not None else None
    return value or None


def _reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "invalid event: " + "; ".join(parts)


def to_row(record: Record, shard_id: str) -> tuple[Any, ...] | Rejection:
    if record.error is not None:
        return Rejection(record, record.error)
    try:
        event = ScoredEvent.model_validate_json(record.data)
    except ValidationError as error:
        return Rejection(record, _reason(error))
    device, geo = event.device_info, event.geo
    country = _trimmed(geo.country) if geo else None
    return (
        event.timestamp,
        event.user_id,
        event.source,
        event.fraud_prediction,
        event.fraud_proba,
        event.anomaly_score,
        event.ip_address,
        device.device_type if device else None,
        device.os_version if device else None,
        device.app_version if device else None,
        country.upper() if country else None,
        _trimmed(geo.region) if geo else None,
        _trimmed(geo.city) if geo else None,
        geo.latitude if geo else None,
        geo.longitude if geo else None,
        event.event_id,
        event.decision,
        event.model_version,
        event.amount,
        event.features,
        event.received_at,
        shard_id,
        Decimal(record.sequence_number),
    )
