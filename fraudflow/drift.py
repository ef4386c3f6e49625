"""The drift watch: population stability (PSI) of the score and of each model input, per hour and model
version, against the version's training reference (its manifest), with the decision and degraded shares.

PSI = sum over bins of (actual - expected) x ln(actual / expected), the bins being the reference's deciles
plus one for missing values. Industry reading: below 0.1 stable, 0.1 to 0.25 watch, above 0.25 act.
The binning runs in PostgreSQL (one pass over the hour's rows); only the counts come back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from fraudflow.data.columns import FEATURES
from fraudflow.db import Connection
from fraudflow.manifest import Distribution, Manifest
from fraudflow.registry import VERSIONS

SCORE = "score"
WATCH, ACT = 0.1, 0.25
BINS = 10
_FLOOR = 1e-4  # an empty bin would make the logarithm infinite
HOUR = timedelta(hours=1)
MAX_ROWS = 200_000  # per window and version: a random sample beyond (plenty for deciles)


def distribution(values: npt.NDArray[Any], bins: int = BINS) -> Distribution | None:
    """The reference of one input: None when it is never known (nothing to compare)."""
    values = np.asarray(values, dtype=np.float64)
    known = values[~np.isnan(values)]
    if not known.size:
        return None
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1)
    return Distribution(
        edges=[float(e) for e in edges],
        shares=[float(c) for c in counts / len(values)],
        missing=float(1 - len(known) / len(values)),
    )


def psi(reference: Distribution, counts: list[int], missing: int) -> float | None:
    """PSI of observed counts per bin (and of missing values) against the reference; None without data."""
    total = sum(counts) + missing
    if total == 0:
        return None
    expected = [*reference.shares, reference.missing]
    actual = [c / total for c in [*counts, missing]]
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _FLOOR), max(a, _FLOOR)
        value += (a - e) * math.log(a / e)
    return value


def _expression(name: str) -> str:
    """Where a model input is in a stored row (names are the known inputs: never user text)."""
    if name == SCORE:
        return "p.fraud_proba::float8"
    if name in FEATURES:
        return f"p.features[{FEATURES.index(name) + 1}]::float8"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not an input name: {name!r}")
    return f"(p.behaviour->>'{name}')::float8"


def _binning_query(names: list[str]) -> str:
    values = ", ".join(f"('{n}', {_expression(n)})" for n in names)
    return f"""
        WITH edges AS (
            SELECT key AS name, ARRAY(SELECT jsonb_array_elements_text(value)::float8) AS edges
            FROM jsonb_each($4::jsonb)
        )
        SELECT f.name, width_bucket(f.v, e.edges) AS bin, count(*) AS n
        FROM fraud_predictions p
        CROSS JOIN LATERAL (VALUES {values}) AS f(name, v)
        JOIN edges e ON e.name = f.name
        WHERE p.received_at >= $1 AND p.received_at < $2 AND p.model_version = $3 AND random() < $5
        GROUP BY 1, 2"""


_SHARES = """
    SELECT model_version, count(*) AS n,
           avg((decision = 'approve')::int) AS approve, avg((decision = 'review')::int) AS review,
           avg((decision = 'decline')::int) AS decline, avg(coalesce(features_degraded, false)::int) AS degraded
    FROM fraud_predictions
    WHERE received_at >= $1 AND received_at < $2
    GROUP BY model_version"""


@dataclass(frozen=True)
class DriftReport:
    window_start: datetime
    window_end: datetime
    model_version: str
    transactions: int
    score_psi: float | None
    features_psi: dict[str, float]
    shares: dict[str, float]  # approve, review, decline, degraded

    @property
    def max_feature(self) -> tuple[str, float] | None:
        if not self.features_psi:
            return None
        name = max(self.features_psi, key=self.features_psi.__getitem__)
        return name, self.features_psi[name]


def reference_of(models_root: Path, version: str) -> dict[str, Distribution]:
    """A published version's reference ({} for a version this registry does not hold, or one trained
    before the drift watch)."""
    folder = models_root / VERSIONS / version
    if "/" in version or not (folder / "manifest.json").is_file():
        return {}
    try:
        return Manifest.read(folder).reference
    except (OSError, ValueError):
        return {}


async def measure(conn: Connection, start: datetime, end: datetime, models_root: Path) -> list[DriftReport]:
    """One report per model version that scored transactions received in [start, end)."""
    reports = []
    for row in await conn.fetch(_SHARES, start, end):
        version = row["model_version"]
        reference = reference_of(models_root, version)
        psis: dict[str, float] = {}
        if reference:
            names = sorted(reference)
            edges = orjson.dumps({n: reference[n].edges for n in names}).decode()
            counts: dict[str, dict[int | None, int]] = {n: {} for n in names}
            share = min(1.0, MAX_ROWS / row["n"])
            for found in await conn.fetch(_binning_query(names), start, end, version, edges, share):
                counts[found["name"]][found["bin"]] = found["n"]
            for name in names:
                by_bin = counts[name]
                value = psi(
                    reference[name], [by_bin.get(i, 0) for i in range(len(reference[name].shares))], by_bin.get(None, 0)
                )
                if value is not None:
                    psis[name] = round(value, 5)
        reports.append(
            DriftReport(
                window_start=start,
                window_end=end,
                model_version=version,
                transactions=row["n"],
                score_psi=psis.pop(SCORE, None),
                features_psi=psis,
                shares={k: float(row[k]) for k in ("approve", "review", "decline", "degraded")},
            )
        )
    return reports


async def store(conn: Connection, reports: list[DriftReport]) -> None:
    """Upsert: a window measured again (its late rows arrived, or on demand) replaces its report."""
    await conn.executemany(
        """INSERT INTO drift_reports AS d (window_start, window_end, model_version, transactions, score_psi,
                                            features_psi, max_feature, max_feature_psi, approve_share,
                                            review_share, decline_share, degraded_share)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (window_start, model_version) DO UPDATE SET
               window_end = excluded.window_end, transactions = excluded.transactions,
               score_psi = excluded.score_psi, features_psi = excluded.features_psi,
               max_feature = excluded.max_feature, max_feature_psi = excluded.max_feature_psi,
               approve_share = excluded.approve_share, review_share = excluded.review_share,
               decline_share = excluded.decline_share, degraded_share = excluded.degraded_share,
               computed_at = now()""",
        [
            (
                r.window_start,
                r.window_end,
                r.model_version,
                r.transactions,
                r.score_psi,
                orjson.dumps(r.features_psi).decode(),
                r.max_feature[0] if r.max_feature else None,
                r.max_feature[1] if r.max_feature else None,
                r.shares["approve"],
                r.shares["review"],
                r.shares["decline"],
                r.shares["degraded"],
            )
            for r in reports
        ],
    )


def hours(end: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The `count` hour windows up to the one holding `end` (which is partial), oldest first."""
    last = end.replace(minute=0, second=0, microsecond=0)
    return [(last - HOUR * i, last - HOUR * (i - 1)) for i in range(count - 1, -1, -1)]


async def latest_complete(conn: Connection) -> list[DriftReport]:
    """Each version's report for the last complete hour measured (a partial hour's figures are noise early on)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (model_version) *
           FROM drift_reports
           WHERE window_end <= now() AND window_end > now() - interval '1 day'
           ORDER BY model_version, window_start DESC"""
    )
    return [
        DriftReport(
            window_start=r["window_start"],
            window_end=r["window_end"],
            model_version=r["model_version"],
            transactions=r["transactions"],
            score_psi=r["score_psi"],
            features_psi=orjson.loads(r["features_psi"]),
            shares={k: r[f"{k}_share"] for k in ("approve", "review", "decline", "degraded")},
        )
        for r in rows
    ]


async def watch(conn: Connection, now: datetime, models_root: Path, count: int = 2) -> list[DriftReport]:
    """Measure and store the last `count` hours (by default the one just ended, with its late rows, and the
    current one so far)."""
    reports: list[DriftReport] = []
    for start, end in hours(now, count):
        measured = await measure(conn, start, end, models_root)
        await store(conn, measured)
        reports += measured
    return reports
