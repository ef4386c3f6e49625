"""A labelled transaction set, and reading/writing it in the creditcard.csv layout."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudflow.data.columns import FEATURES, LABEL, N_FEATURES, TIME_INDEX

DEFAULT_PATH = Path("dataset/creditcard.csv")  # where the reference design keeps the real file


class DatasetError(ValueError):
    """The file is missing or not in the creditcard.csv layout; the message says what is wrong."""


@dataclass(frozen=True)
class Dataset:
    features: npt.NDArray[np.float32]  # (n, 30): Time, V1..V28, Amount
    labels: npt.NDArray[np.int8]  # (n,): 1 = fraud
    source: str

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != N_FEATURES:
            raise DatasetError(f"expected {N_FEATURES} feature columns, got shape {self.features.shape}")
        if len(self.labels) != len(self.features):
            raise DatasetError("features and labels differ in length")

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def frauds(self) -> int:
        return int(self.labels.sum())

    def sha256(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.features).tobytes())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    def time_ordered(self) -> Dataset:
        order = np.argsort(self.features[:, TIME_INDEX], kind="stable")
        return Dataset(self.features[order], self.labels[order], self.source)


def _strip(token: str) -> str:
    return token.strip().strip('"')


def load_creditcard(path: Path = DEFAULT_PATH) -> Dataset:
    """Read creditcard.csv (the real one or `fraudflow synth` output), checking its columns first."""
    if not path.exists():
        raise DatasetError(f"{path} does not exist; generate a synthetic set with `fraudflow synth --out {path}`")
    # utf-8-sig: a byte-order mark (spreadsheet exports write one) is not part of the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        expected = [*FEATURES, LABEL]
        canonical = {name.lower(): name for name in expected}  # `class` or `CLASS` is Class
        header = [canonical.get(_strip(name).lower(), _strip(name)) for name in next(reader, [])]
        if header != expected:
            missing = [c for c in expected if c not in header]
            extra = [c for c in header if c not in expected]
            detail = f"missing {missing}" if missing else ""
            detail += f"{'; ' if detail else ''}unexpected {extra}" if extra else ""
            raise DatasetError(
                f"{path}: columns must be {', '.join(expected)} in that order ({detail or 'wrong order'})"
            )
        rows: list[list[float]] = []
        for line_number, row in enumerate(reader, start=2):
            if not any(value.strip() for value in row):  # blank lines, a trailing one included
                continue
            if len(row) != len(expected):
                raise DatasetError(f"{path}:{line_number}: expected {len(expected)} values, got {len(row)}")
            try:
                rows.append([float(_strip(value)) for value in row])
            except ValueError:
                raise DatasetError(f"{path}:{line_number}: a value is not a number") from None
    if not rows:
        raise DatasetError(f"{path} has a header but no rows")
    table = np.asarray(rows, dtype=np.float64)
    labels = table[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise DatasetError(f"{path}: {LABEL} must be 0 or 1")
    if not np.isfinite(table).all():
        raise DatasetError(f"{path}: contains NaN or infinite values")
    return Dataset(table[:, :-1].astype(np.float32), labels.astype(np.int8), source=str(path))


def write_creditcard(dataset: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([dataset.features.astype(np.float64), dataset.labels.astype(np.float64)])
    formats = ["%.0f"] + ["%.6f"] * (N_FEATURES - 2) + ["%.2f", "%d"]
    header = ",".join(f'"{name}"' for name in (*FEATURES, LABEL))
    np.savetxt(path, table, fmt=formats, delimiter=",", header=header, comments="")
