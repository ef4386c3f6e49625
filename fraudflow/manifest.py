"""The model card (`models/manifest.json`): what was trained, on what, how well, and how to serve it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import fraudflow
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
    # What a legitimate transaction usually has (median over the training split's), for reasons in words.
    typical: dict[str, float] = Field(default_factory=dict)

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
        if self.explainer is not None:  # sets from before explanations keep their version
            serving |= self.model_dump(mode="json", include={"explainer", "typical"})
        return hashlib.sha256(json.dumps(serving, sort_keys=True).encode()).hexdigest()[:12]

    def inputs(self, model: ModelFile) -> list[str]:
        """What a model of this set reads, in order."""
        return model.features if model.features is not None else self.features

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_text())

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")


def default_models_dir() -> Path:
    """`models/` of a source checkout, else the copy shipped inside the wheel."""
    package = Path(fraudflow.__file__).resolve().parent
    checkout = package.parent / "models"
    return checkout if (checkout / MANIFEST_FILE).exists() else package / "bundled_models"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
