"""The model card (`models/manifest.json`): what was trained, on what, how well, and how to serve it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudflow.behaviour.definitions import NAMES as BEHAVIOUR
from fraudflow.data.columns import FEATURES

MANIFEST_FILE = "manifest.json"
# Everything a model may read: the request's 30 columns, then the behaviour features (the scorer's layout).
MODEL_INPUTS = (*FEATURES, *BEHAVIOUR)


class ModelFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: str
    opset: dict[str, int]
    input: str
    output: str
    output_column: int | None = None  # for (n, k) outputs: the column we read
    # The model's inputs in order, when not the manifest's `features` (the detector cannot take the missing
    # values behaviour features have, so it may read the reference columns alone).
    features: list[str] | None = None


class ExplainerFile(BaseModel):
    """The classifier as LightGBM saved it: its TreeSHAP contributions explain flagged transactions."""

    model_config = ConfigDict(frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["lightgbm_text"] = "lightgbm_text"


class SampleFile(BaseModel):
    """Validation rows with the decisions the set gave them at training: checked again at every load."""

    model_config = ConfigDict(frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=1)


class Thresholds(BaseModel):
    """Bands over the fraud probability, chosen on the validation slice."""

    model_config = ConfigDict(frozen=True)

    review: float = Field(ge=0.0, le=1.0)
    decline: float = Field(ge=0.0, le=1.0)
    target_recall: float
    target_precision: float

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError("review threshold must not exceed decline threshold")
        return self


class Calibration(BaseModel):
    """Platt scaling fitted on the validation split: the classifier's score (trained with class weights, so
    too high) mapped to a probability that matches the frauds seen, which the cost policy needs."""

    model_config = ConfigDict(frozen=True)

    slope: float
    intercept: float

    def apply(self, proba: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        clipped = np.clip(proba.astype(np.float64), 1e-12, 1 - 1e-12)
        logit = np.log(clipped / (1 - clipped))
        return (1 / (1 + np.exp(-(self.slope * logit + self.intercept)))).astype(np.float32)


class CostPolicy(BaseModel):
    """The model's decision by expected cost (docs/decisions.md): approving costs the expected loss
    p x (amount + chargeback fee), reviewing the review cost (plus a penalty keeping reviews within the team's
    capacity on validation), declining the expected cost of turning away a good customer,
    (1 - p) x (share x amount + fixed). The cheapest wins."""

    model_config = ConfigDict(frozen=True)

    review_cost: float = Field(gt=0)
    chargeback_fee: float = Field(ge=0)
    false_decline_share: float = Field(ge=0, le=1)
    false_decline_fixed: float = Field(ge=0)
    review_capacity: float = Field(gt=0, le=1)
    capacity_penalty: float = Field(ge=0)
    # Review an otherwise approved transaction this anomalous; None: the detector only informs (it did not
    # measurably lower the cost on validation).
    anomaly_review_from: float | None = Field(None, ge=0, le=1)

    def costs(self, proba: Any, amount: Any) -> tuple[Any, float, Any]:
        """Expected cost of approving, reviewing and declining: arrays for arrays, numbers for numbers."""
        a = np.maximum(amount, 0.0)
        approve = proba * (a + self.chargeback_fee)
        decline = (1 - proba) * (self.false_decline_share * a + self.false_decline_fixed)
        return approve, self.review_cost + self.capacity_penalty, decline

    def decide(
        self, proba: npt.NDArray[Any], amount: npt.NDArray[Any], anomaly: npt.NDArray[Any]
    ) -> npt.NDArray[np.int8]:
        """0 approve, 1 review, 2 decline."""
        approve, review, decline = self.costs(proba, amount)
        decision = np.where(decline <= np.minimum(approve, review), 2, np.where(review < approve, 1, 0))
        if self.anomaly_review_from is not None:
            decision = np.where((decision == 0) & (anomaly >= self.anomaly_review_from), 1, decision)
        return decision.astype(np.int8)


class AnomalyScale(BaseModel):
    """Maps the detector's raw outlier score (higher = more anomalous) onto [0, 1]."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> AnomalyScale:
        if not self.high > self.low:
            raise ValueError("anomaly scale needs high > low")
        return self

    def apply(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The detector's raw score (high for normal rows) flipped and mapped onto [0, 1]."""
        low, span = np.float32(self.low), np.float32(self.high - self.low)
        scaled: npt.NDArray[np.float32] = np.clip((-raw.astype(np.float32) - low) / span, 0.0, 1.0)
        return scaled.astype(np.float32)


class Distribution(BaseModel):
    """An input's (or the score's) distribution on the validation split, the reference drift is measured
    against: bins cut at its deciles (inner edges, ascending; bin i holds edges[i-1] <= x < edges[i]), the
    share of known values in each, and the share of missing values."""

    edges: list[float] = Field(min_length=1, max_length=20)
    shares: list[float]
    missing: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        if len(self.shares) != len(self.edges) + 1 or self.edges != sorted(self.edges):
            raise ValueError("shares must have one more value than the ascending edges")
        return self


class TrainingData(BaseModel):
    source: str
    rows: int
    frauds: int
    sha256: str
    # Time-ordered split boundaries (the Time column, in seconds): train < validation_from <= ... < test_from.
    validation_from_time: float
    test_from_time: float


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    version: str
    created_at: datetime
    features: list[str]
    fraud_classifier: ModelFile
    anomaly_detector: ModelFile
    thresholds: Thresholds
    anomaly_scale: AnomalyScale
    metrics: dict[str, Any]
    training_data: TrainingData
    explainer: ExplainerFile | None = None
    # The decision by expected cost on calibrated probabilities; without them, the thresholds decide.
    calibration: Calibration | None = None
    policy: CostPolicy | None = None
    sample: SampleFile | None = None
    # What a legitimate transaction usually has (median over the training split's), for reasons in words.
    typical: dict[str, float] = Field(default_factory=dict)
    # The drift watch's reference: the score ("score") and each classifier input on the validation split.
    reference: dict[str, Distribution] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_features(self) -> Manifest:
        for name, columns in (
            ("features", self.features),
            ("fraud_classifier.features", self.fraud_classifier.features),
            ("anomaly_detector.features", self.anomaly_detector.features),
        ):
            if columns is None:
                continue
            unknown = [c for c in columns if c not in MODEL_INPUTS]
            if not columns or unknown or len(set(columns)) != len(columns):
                raise ValueError(
                    f"{name} must name distinct model inputs: the 30 columns Time, V1..V28, Amount and the "
                    f"behaviour features of docs/models.md"
                    + (f" (unknown: {', '.join(unknown[:5])})" if unknown else "")
                )
        return self

    def content_version(self) -> str:
        """The version this manifest's content implies: a hash of everything that decides a score (model
        files, their inputs and outputs, thresholds, anomaly scale), so a set edited after training (its
        thresholds set to 0, a model swapped) cannot keep its old name in the audit trail."""
        serving = self.model_dump(
            mode="json", include={"features", "fraud_classifier", "anomaly_detector", "thresholds", "anomaly_scale"}
        )
        # Sets from before explanations and the cost policy keep their version.
        for added in ("explainer", "calibration", "policy", "sample"):
            if getattr(self, added) is not None:
                serving |= self.model_dump(mode="json", include={added, "typical"} if added == "explainer" else {added})
        return hashlib.sha256(json.dumps(serving, sort_keys=True).encode()).hexdigest()[:12]

    def inputs(self, model: ModelFile) -> list[str]:
        """What a model of this set reads, in order."""
        return model.features if model.features is not None else self.features

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_text())

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
