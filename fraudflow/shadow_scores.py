"""The challenger's shadow scores: the record the API publishes for a batch it scored with the challenger,
and the consumer stores in `challenger_scores` (documented in docs/events.md).

Columnar (one list per field, a position per transaction) so that the API encodes a batch straight from
its arrays. The champion's model score and decision ride along, so a comparison needs no other table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudflow.events import Decision, ModelVersion, UtcTime, encode_event

KIND = "shadow_scores"
MAX_ROWS = 1000  # per record: about 120 KB, well within Kinesis's 1 MB
DECISION_LABELS = ("approve", "review", "decline")  # by Decision code

Probability = Annotated[float, Field(ge=0, le=1)]
Rows = Field(min_length=1, max_length=MAX_ROWS)


class ShadowScores(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["shadow_scores"]
    schema_version: Literal[1]
    champion_version: ModelVersion
    challenger_version: ModelVersion
    scored_at: UtcTime
    event_ids: list[uuid.UUID] = Rows
    champion_proba: list[Probability] = Rows
    champion_decision: list[Decision] = Rows
    fraud_proba: list[Probability] = Rows
    anomaly_score: list[Probability] = Rows
    decision: list[Decision] = Rows

    @model_validator(mode="after")
    def _aligned(self) -> ShadowScores:
        lengths = {
            len(column)
            for column in (
                self.event_ids,
                self.champion_proba,
                self.champion_decision,
                self.fraud_proba,
                self.anomaly_score,
                self.decision,
            )
        }
        if len(lengths) != 1:
            raise ValueError("every column must have one value per event")
        return self


def build_shadow_scores(
    *,
    champion_version: str,
    challenger_version: str,
    scored_at: datetime,
    event_ids: list[str],
    champion_proba: npt.NDArray[np.float32],
    champion_decision: npt.NDArray[np.int8],
    fraud_proba: npt.NDArray[np.float32],
    anomaly_score: npt.NDArray[np.float32],
    decision: npt.NDArray[np.int8],
) -> bytes:
    """The record body, from the scorer's arrays (decisions as Decision codes)."""
    return encode_event(
        {
            "kind": KIND,
            "schema_version": 1,
            "champion_version": champion_version,
            "challenger_version": challenger_version,
            "scored_at": scored_at,
            "event_ids": event_ids,
            "champion_proba": champion_proba,
            "champion_decision": [DECISION_LABELS[d] for d in champion_decision.tolist()],
            "fraud_proba": fraud_proba,
            "anomaly_score": anomaly_score,
            "decision": [DECISION_LABELS[d] for d in decision.tolist()],
        }
    )
