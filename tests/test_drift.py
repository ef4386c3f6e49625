"""The drift watch: PSI of the score and of each model input against the version's training reference,
computed in PostgreSQL exactly as by hand, stored per hour, exposed as gauges, and loud when traffic moves."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import orjson
import pytest
from typer.testing import CliRunner

from consumers.drift_watch import measure_once
from consumers.metrics import ConsumerMetrics
from fraudflow.behaviour.definitions import NAMES
from fraudflow.cli.main import app as cli
from fraudflow.data.columns import AMOUNT_INDEX, N_FEATURES
from fraudflow.drift import ACT, SCORE, WATCH, distribution, measure, psi
from fraudflow.manifest import MODEL_INPUTS
from fraudflow.registry import default_models_root, resolve
from fraudflow.scoring import ModelSet


def test_psi_is_zero_for_the_reference_itself_and_large_for_a_shift() -> None:
    values = np.random.default_rng(0).normal(size=20_000)
    reference = distribution(values)
    assert reference is not None
    assert len(reference.edges) == 9
    same = np.bincount(np.searchsorted(reference.edges, values, side="right"), minlength=10).tolist()
    assert psi(reference, same, 0) == pytest.approx(0, abs=1e-9)
    moved = values + 0.5
    counts = np.bincount(np.searchsorted(reference.edges, moved, side="right"), minlength=10).tolist()
    assert (psi(reference, counts, 0) or 0) > WATCH
    # Every value missing (the store down): far beyond "act", not a division by zero.
    assert (psi(reference, [0] * 10, 1000) or 0) > ACT
    assert psi(reference, [0] * 10, 0) is None
    assert distribution(np.full(10, np.nan)) is None


@pytest.fixture(scope="module")
def served() -> tuple[ModelSet, npt.NDArray[np.float32]]:
    models = ModelSet(resolve(default_models_root()))
    with np.load(models.directory / "sample.npz") as stored:
        return models, np.ascontiguousarray(stored["rows"], dtype=np.float32)


async def _insert(
    db: asyncpg.Connection, models: ModelSet, rows: npt.NDArray[np.float32], received_at: datetime, degraded: bool
) -> npt.NDArray[np.float32]:
    scores = models.score(rows)
    records: list[tuple[Any, ...]] = []
    for i, row in enumerate(rows):
        behaviour = {
            n: (None if np.isnan(v) else float(v)) for n, v in zip(NAMES, row[N_FEATURES:].tolist(), strict=True)
        }
        records.append(
            (
                received_at,
                received_at,
                "u",
                "test",
                0,
                float(scores.fraud_proba[i]),
                0.1,
                uuid.uuid4(),
                ("approve", "review", "decline")[int(scores.decision[i])],
                models.version,
                row[:N_FEATURES].tolist(),
                orjson.dumps(behaviour).decode(),
                degraded,
            )
        )
    await db.executemany(
        """INSERT INTO fraud_predictions ("timestamp", received_at, user_id, source, fraud_prediction, fraud_proba,
                                          anomaly_score, event_id, decision, model_version, features, behaviour,
                                          features_degraded)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13)""",
        records,
    )
    return scores.fraud_proba


def _by_hand(models: ModelSet, name: str, values: npt.NDArray[Any]) -> float:
    reference = models.manifest.reference[name]
    known = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(reference.edges, known, side="right"), minlength=len(reference.shares))
    value = psi(reference, counts.tolist(), int(np.isnan(values).sum()))
    assert value is not None
    return value


async def test_psi_in_postgresql_equals_the_computation_by_hand_and_a_shift_is_flagged(
    db: asyncpg.Connection, served: tuple[ModelSet, npt.NDArray[np.float32]]
) -> None:
    models, rows = served
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    proba = await _insert(db, models, rows, hour + timedelta(minutes=5), degraded=False)
    # The next hour: amounts twenty times larger, and a quarter of the transactions without behaviour features.
    shifted = rows.copy()
    shifted[:, AMOUNT_INDEX] *= 20
    shifted[: len(rows) // 4, N_FEATURES:][:, : len(NAMES) - 2] = np.nan
    await _insert(db, models, shifted[: len(rows) // 4], hour + timedelta(minutes=65), degraded=True)
    await _insert(db, models, shifted[len(rows) // 4 :], hour + timedelta(minutes=70), degraded=False)

    assert {"hour_of_day", "day_of_week"}.isdisjoint(models.manifest.reference)  # an hour holds one hour
    (calm,) = await measure(db, hour, hour + timedelta(hours=1), default_models_root())
    assert calm.model_version == models.version
    assert calm.transactions == len(rows)
    assert calm.score_psi == pytest.approx(_by_hand(models, SCORE, proba.astype(np.float64)), abs=1e-4)
    classifier_inputs = models.manifest.inputs(models.manifest.fraud_classifier)
    for name in classifier_inputs:
        if name in calm.features_psi:
            column = rows[:, MODEL_INPUTS.index(name)].astype(np.float64)
            assert calm.features_psi[name] == pytest.approx(_by_hand(models, name, column), abs=1e-4), name
    assert calm.shares["degraded"] == 0

    (moved,) = await measure(db, hour + timedelta(hours=1), hour + timedelta(hours=2), default_models_root())
    assert moved.features_psi["Amount"] > ACT
    assert moved.max_feature is not None
    assert moved.max_feature[1] > ACT
    assert moved.shares["degraded"] == pytest.approx(0.25, abs=0.01)
    assert sum(moved.shares[d] for d in ("approve", "review", "decline")) == pytest.approx(1)


async def test_the_hourly_watch_stores_reports_and_sets_the_gauges_an_alert_reads(
    db: asyncpg.Connection, database_url: str, served: tuple[ModelSet, npt.NDArray[np.float32]], tmp_path: Path
) -> None:
    models, rows = served
    shifted = rows.copy()
    shifted[:, AMOUNT_INDEX] *= 20
    last_hour = datetime.now(UTC) - timedelta(hours=1)
    await _insert(db, models, shifted, last_hour, degraded=False)
    metrics = ConsumerMetrics()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await asyncio.gather(*(measure_once(pool, default_models_root(), metrics) for _ in range(2)))  # one measures
    finally:
        await pool.close()
    stored = await db.fetch("SELECT * FROM drift_reports WHERE transactions > 0")
    assert len(stored) == 1
    amount = metrics.registry.get_sample_value(
        "fraudflow_drift_psi", {"model_version": models.version, "input": "Amount"}
    )
    assert amount is not None
    assert amount > ACT
    share = metrics.registry.get_sample_value(
        "fraudflow_decision_share", {"model_version": models.version, "decision": "approve"}
    )
    assert share is not None
    assert 0 < share <= 1

    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["models", "drift", "--hours", "2"], env={"DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.output
    assert f"{models.version}       256 transactions" in result.output
    assert "ACT" in result.output
