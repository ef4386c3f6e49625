"""From Kinesis record to `fraud_predictions` row, with the reference job's transforms, or to a dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from consumers.retrieval.fetcher import Record
from fraudflow.events import ScoredEvent, country_code
from fraudflow.heartbeats import ApiHeartbeat
from fraudflow.shadow_scores import ShadowScores

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
    "device_id",
    "behaviour",
    "features_degraded",
    "decided_by",
    "reasons",
)


# Columns sent to the staging table as text and converted by PostgreSQL (type of the target column): asyncpg
# encodes real[] and numeric values element by element in Python, measured at 6 and 2.5 us a row against 0.1.
AS_TEXT = {"features": "real[]", "sequence_number": "numeric", "behaviour": "jsonb", "reasons": "jsonb"}


@dataclass(frozen=True)
class Rejection:
    record: Record
    reason: str


# The stream's other records, by kind: a few per process and minute (heartbeats) or per scored batch (shadow).
OtherRecord = Annotated[ApiHeartbeat | ShadowScores, Field(discriminator="kind")]
_OTHER = TypeAdapter[ApiHeartbeat | ShadowScores](OtherRecord)


def _trimmed(value: str | None) -> str | None:
    value = value.strip() if value is not None else None
    return value or None


def _reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "invalid event: " + "; ".join(parts)


def _array_literal(values: list[float]) -> str:
    # PostgreSQL's text form of an array, from orjson's JSON of the list: "[1.5,2.0]" -> "{1.5,2.0}".
    return "{" + orjson.dumps(values)[1:-1].decode() + "}"


def _reasons_json(event: ScoredEvent) -> str:
    return orjson.dumps([r.model_dump(exclude_none=True) for r in event.reasons or ()]).decode()


def to_row(record: Record, shard_id: str) -> tuple[Any, ...] | ApiHeartbeat | ShadowScores | Rejection:
    if record.error is not None:
        return Rejection(record, record.error)
    try:
        event = ScoredEvent.model_validate_json(record.data)
    except ValidationError as error:
        # Heartbeats and shadow scores are few: they take this slower path, events never do.
        try:
            return _OTHER.validate_json(record.data)
        except ValidationError:
            return Rejection(record, _reason(error))
    device, geo = event.device_info, event.geo
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
        country_code(geo.country) if geo else None,
        _trimmed(geo.region) if geo else None,
        _trimmed(geo.city) if geo else None,
        geo.latitude if geo else None,
        geo.longitude if geo else None,
        event.event_id,
        event.decision,
        event.model_version,
        event.amount,
        _array_literal(event.features),
        event.received_at,
        shard_id,
        record.sequence_number,
        _trimmed(device.device_id) if device else None,
        None if event.behaviour is None else orjson.dumps(event.behaviour).decode(),
        event.features_degraded,
        event.decided_by,
        None if event.reasons is None else _reasons_json(event),
    )
