"""A labelled transaction set, and reading/writing it in the creditcard.csv layout."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudflow.behaviour.definitions import Activity
from fraudflow.data.columns import FEATURES, LABEL, N_FEATURES, TIME_INDEX

DEFAULT_PATH = Path("dataset/creditcard.csv")  # where the reference design keeps the real file


class DatasetError(ValueError):
    """The file is missing or not in the creditcard.csv layout; the message says what is wrong."""


# The metadata columns a history adds after Class (what the API receives with each transaction).
HISTORY_COLUMNS = (
    "event_id",
    "timestamp",
    "user_id",
    "device_id",
    "ip_address",
    "country",
    "city",
    "latitude",
    "longitude",
)


@dataclass(frozen=True)
class History:
    """Who paid, when, from where: one entry per row (None or NaN where unknown)."""

    event_id: list[str]
    timestamp: npt.NDArray[np.float64]  # seconds since the epoch, UTC
    user_id: list[str]
    device_id: list[str | None]
    ip_address: list[str | None]
    country: list[str | None]
    city: list[str | None]
    latitude: npt.NDArray[np.float64]
    longitude: npt.NDArray[np.float64]

    def take(self, order: npt.NDArray[np.intp]) -> History:
        index = order.tolist()
        return History(
            [self.event_id[i] for i in index],
            self.timestamp[order],
            [self.user_id[i] for i in index],
            [self.device_id[i] for i in index],
            [self.ip_address[i] for i in index],
            [self.country[i] for i in index],
            [self.city[i] for i in index],
            self.latitude[order],
            self.longitude[order],
        )

    def activities(self, amounts: npt.NDArray[np.float32]) -> list[Activity]:
        """The rows as the behaviour features see them (the API builds the same from a request)."""
        out = []
        for i, amount in enumerate(amounts.tolist()):
            lat, lon = float(self.latitude[i]), float(self.longitude[i])
            out.append(
                Activity(
                    event_id=self.event_id[i],
                    user_id=self.user_id[i],
                    time_s=float(self.timestamp[i]),
                    amount=amount,
                    device_id=self.device_id[i],
                    ip_address=self.ip_address[i],
                    country=self.country[i],
                    latitude=None if lat != lat else lat,  # NaN: not located
                    longitude=None if lon != lon else lon,
                )
            )
        return out


@dataclass(frozen=True)
class Dataset:
    features: npt.NDArray[np.float32]  # (n, 30): Time, V1..V28, Amount
    labels: npt.NDArray[np.int8]  # (n,): 1 = fraud
    source: str
    history: History | None = None  # the metadata, when the data set has it (the ULB file does not)
    # The behaviour features as the API served them (n, len(BEHAVIOUR)), for a set read from
    # fraud_predictions: training uses them instead of replaying the history.
    served: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != N_FEATURES:
            raise DatasetError(f"expected {N_FEATURES} feature columns, got shape {self.features.shape}")
        if len(self.labels) != len(self.features):
            raise DatasetError("features and labels differ in length")
        if self.history is not None and len(self.history.event_id) != len(self.labels):
            raise DatasetError("the history and the rows differ in length")
        if self.served is not None and len(self.served) != len(self.labels):
            raise DatasetError("the served behaviour features and the rows differ in length")

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def frauds(self) -> int:
        return int(self.labels.sum())

    def sha256(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.features).tobytes())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        if self.history is not None:
            digest.update("\x1f".join(self.history.event_id).encode())
            digest.update("\x1f".join(self.history.user_id).encode())
        if self.served is not None:
            digest.update(np.ascontiguousarray(self.served).tobytes())
        return digest.hexdigest()

    def time_ordered(self) -> Dataset:
        order = np.argsort(self.features[:, TIME_INDEX], kind="stable")
        history = None if self.history is None else self.history.take(order)
        served = None if self.served is None else self.served[order]
        return Dataset(self.features[order], self.labels[order], self.source, history, served)


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
        canonical = {name.lower(): name for name in (*expected, *HISTORY_COLUMNS)}  # `class` or `CLASS` is Class
        header = [canonical.get(_strip(name).lower(), _strip(name)) for name in next(reader, [])]
        with_history = header == [*expected, *HISTORY_COLUMNS]  # `fraudflow synth --history` output
        if with_history:
            expected = header
        if header != expected:
            missing = [c for c in expected if c not in header]
            extra = [c for c in header if c not in expected]
            detail = f"missing {missing}" if missing else ""
            detail += f"{'; ' if detail else ''}unexpected {extra}" if extra else ""
            raise DatasetError(
                f"{path}: columns must be {', '.join(expected)} in that order ({detail or 'wrong order'})"
            )
        rows: list[list[float]] = []
        meta: list[list[str]] = []
        numbers = N_FEATURES + 1
        for line_number, row in enumerate(reader, start=2):
            if not any(value.strip() for value in row):  # blank lines, a trailing one included
                continue
            if len(row) != len(expected):
                raise DatasetError(f"{path}:{line_number}: expected {len(expected)} values, got {len(row)}")
            try:
                rows.append([float(_strip(value)) for value in row[:numbers]])
                if with_history:
                    meta.append(row[numbers:])
                    float(row[numbers + 1])  # the timestamp
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
    history = _history(meta) if with_history else None
    return Dataset(table[:, :-1].astype(np.float32), labels.astype(np.int8), source=str(path), history=history)


def _history(meta: list[list[str]]) -> History:
    columns = list(zip(*meta, strict=True))

    def text(i: int) -> list[str | None]:
        return [value or None for value in columns[i]]

    def number(i: int) -> npt.NDArray[np.float64]:
        return np.array([float(value) if value else np.nan for value in columns[i]])

    return History(
        event_id=list(columns[0]),
        timestamp=number(1),
        user_id=list(columns[2]),
        device_id=text(3),
        ip_address=text(4),
        country=text(5),
        city=text(6),
        latitude=number(7),
        longitude=number(8),
    )


def write_creditcard(dataset: Dataset, path: Path) -> None:
    """The creditcard.csv layout; a history's metadata follows Class (HISTORY_COLUMNS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if dataset.history is not None:
        _write_with_history(dataset, dataset.history, path)
        return
    table = np.column_stack([dataset.features.astype(np.float64), dataset.labels.astype(np.float64)])
    formats = ["%.0f"] + ["%.6f"] * (N_FEATURES - 2) + ["%.2f", "%d"]
    header = ",".join(f'"{name}"' for name in (*FEATURES, LABEL))
    np.savetxt(path, table, fmt=formats, delimiter=",", header=header, comments="")


def _write_with_history(dataset: Dataset, history: History, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, LABEL, *HISTORY_COLUMNS])
        for i, (row, label) in enumerate(zip(dataset.features.tolist(), dataset.labels.tolist(), strict=True)):
            lat, lon = float(history.latitude[i]), float(history.longitude[i])
            writer.writerow(
                [
                    f"{row[0]:.3f}",
                    *(f"{v:.6f}" for v in row[1:-1]),
                    f"{row[-1]:.2f}",
                    label,
                    history.event_id[i],
                    f"{history.timestamp[i]:.3f}",
                    history.user_id[i],
                    history.device_id[i] or "",
                    history.ip_address[i] or "",
                    history.country[i] or "",
                    history.city[i] or "",
                    "" if lat != lat else f"{lat:.4f}",
                    "" if lon != lon else f"{lon:.4f}",
                ]
            )
