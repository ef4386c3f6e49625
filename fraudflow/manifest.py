"""The model card (`models/manifest.json`): what was trained, on what, how well, and how to serve it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import fraudflow
from fraudflow.data.columns import FEATURES

MANIFEST_FILE = "manifest.json"


class ModelFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: str
    opset: dict[str, int]
    input: str
    output: str
    output_column: int | None = None  # for (n, k) outputs: the column we read


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

    @model_validator(mode="after")
    def _known_features(self) -> Manifest:
        if tuple(self.features) != FEATURES:
            raise ValueError(f"features must be the {len(FEATURES)} columns Time, V1..V28, Amount in order")
        return self

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


def content_version(*parts: str) -> str:
    """A short content hash: the same models and thresholds always get the same version."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
