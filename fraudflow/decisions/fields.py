"""What a rule can read: the transaction, its scores, its behaviour features and the lists it is on."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fraudflow.behaviour.definitions import FEATURES as BEHAVIOUR


class Kind(enum.Enum):
    NUMBER = "number"
    TEXT = "text"
    NAMES = "list of names"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    description: str


TRANSACTION = (
    Field("amount", Kind.NUMBER, "the payment amount"),
    Field("user_id", Kind.TEXT, "the paying user"),
    Field("device_id", Kind.TEXT, "the device id (null when the app sent none)"),
    Field("ip_address", Kind.TEXT, "the client's IP address"),
    Field("country", Kind.TEXT, "the country code, upper case (e.g. FR)"),
    Field("city", Kind.TEXT, "the city"),
    Field("source", Kind.TEXT, "the sending app or channel"),
)
SCORES = (
    Field("fraud_proba", Kind.NUMBER, "the fraud classifier's probability (0-1)"),
    Field("anomaly_score", Kind.NUMBER, "the anomaly detector's score (0-1, higher = more unusual)"),
    Field("expected_loss", Kind.NUMBER, "fraud_proba x amount"),
    Field("model_decision", Kind.TEXT, "what the model policy decides: approve, review or decline"),
)
LISTS = Field("lists", Kind.NAMES, "the names of the lists holding this user, device, IP address or country")
FEATURES = tuple(Field(b.name, Kind.NUMBER, b.description) for b in BEHAVIOUR)
FIELDS = {f.name: f for f in (*TRANSACTION, *SCORES, *FEATURES, LISTS)}
