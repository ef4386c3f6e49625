"""Request and response bodies of the scoring API (the reference design's contract, plus ours)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from fraudflow.events import DecidedBy, DeviceInfo, Geo, IpAddress, LongText, Reason, Source, UserId, UtcTime
from fraudflow.features import parse_features

EXAMPLE_DATA = ", ".join(
    [
        "406",
        "-2.3122",
        "1.952",
        "-1.6099",
        "3.9979",
        "-0.5222",
        "-1.4265",
        "-2.5374",
        "1.3917",
        "-2.7701",
        "-2.7723",
        "3.202",
        "-2.8999",
        "-0.5952",
        "-4.2893",
        "0.3897",
        "-1.1407",
        "-2.8301",
        "-0.0168",
        "0.417",
        "0.1269",
        "0.5172",
        "-0.035",
        "-0.4652",
        "0.3202",
        "0.0445",
        "0.1778",
        "0.2611",
        "-0.1433",
        "0.0",
    ]
)


def _features(value: Any) -> npt.NDArray[np.float32]:
    if not isinstance(value, str):
        raise ValueError("must be a string of 30 comma-separated numbers")
    if len(value) > 4096:
        raise ValueError("is longer than 4096 characters")
    return parse_features(value)


Features = Annotated[
    npt.NDArray[np.float32],
    PlainValidator(_features),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 4096,
            "description": "30 comma-separated numbers: Time, V1..V28, Amount (spaces allowed)",
            "examples": [EXAMPLE_DATA],
        }
    ),
]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    timestamp: UtcTime = Field(description="Transaction time, ISO 8601. A naive time is taken as UTC.")
    user_id: UserId = Field(description="Also the Kinesis partition key.")
    source: Source
    device_info: DeviceInfo | None = None
    ip_address: IpAddress | None = Field(None, description="IPv4 or IPv6; private ranges allowed.")
    geo: Geo | None = None
    transaction_id: LongText | None = Field(
        None,
        min_length=1,
        description="Client idempotency key (or the Idempotency-Key header): a retry gets the same event_id.",
    )


EXAMPLE_REQUEST: dict[str, Any] = {
    "metadata": {
        "timestamp": "2025-08-21T17:45:00Z",
        "user_id": "u_123",
        "source": "checkout",
        "device_info": {"device_type": "mobile", "os_version": "iOS 17", "app_version": "2.4.1"},
        "ip_address": "203.0.113.10",
        "geo": {"country": "fr", "region": "IDF", "city": "Paris", "latitude": 48.85, "longitude": 2.35},
    },
    "data": EXAMPLE_DATA,
}


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore", arbitrary_types_allowed=True, json_schema_extra={"examples": [EXAMPLE_REQUEST]}
    )

    metadata: Metadata
    data: Features


class AnomalyDetector(BaseModel):
    score: float = Field(description="0..1, higher is more anomalous")


class FraudClassifier(BaseModel):
    pred_proba: float = Field(description="Probability of fraud")
    prediction: Literal[0, 1] = Field(description="1 when the decision is decline")


class Timing(BaseModel):
    total_ms: float
    scoring_ms: float
    publish_ms: float


class PredictResponse(BaseModel):
    anomaly_detector: AnomalyDetector
    fraud_classifier: FraudClassifier
    event_id: uuid.UUID
    decision: Literal["approve", "review", "decline"]
    model_version: str
    features_degraded: bool = Field(
        description="true when the behaviour features could not be computed in time (the feature store is down "
        "or slow, or none is configured): the transaction was scored without them"
    )
    decided_by: DecidedBy = Field(description="What decided: an allow or deny list, a rule, or the model")
    reasons: list[Reason] = Field(description="Why, the deciding reason first; the model's view is always given")
    timing: Timing


class BatchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"transactions": [EXAMPLE_REQUEST]}]})

    transactions: list[dict[str, Any]] = Field(
        min_length=1, description="Each item is a /predict body; each is validated and answered on its own."
    )


class ItemError(BaseModel):
    status: int
    detail: list[dict[str, Any]] | str
    published: Literal["maybe", "no"] | None = Field(
        None, description="503 only: whether the event may still be published"
    )
    event_id: uuid.UUID | None = Field(None, description="503 only: the event a retry with `idempotency_key` is")
    idempotency_key: str | None = Field(None, description="503 only: send it as the retry's Idempotency-Key")


class BatchItem(BaseModel):
    index: int
    result: PredictResponse | None = None
    error: ItemError | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    model_version: str


class PolicyStatus(BaseModel):
    rules: int = Field(description="Enabled rules applied")
    lists: int = Field(description="Lists applied")
    current: bool = Field(description="false while PostgreSQL cannot be reached: the last rules and lists apply")
    problem: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    model_version: str
    stream: str
    buffered_records: int = Field(description="Records accepted and not yet acknowledged by Kinesis")
    oldest_buffered_s: float = Field(description="How long the oldest of them has waited")
    problems: list[str] = Field(description="Why the process is not ready; empty when it is")
    policy: PolicyStatus


class ReloadResult(BaseModel):
    previous_version: str
    model_version: str
    challenger_version: str | None = Field(None, description="Scored in shadow; it decides nothing")
    challenger_problem: str | None = Field(None, description="Why the registry's challenger is not scored")
