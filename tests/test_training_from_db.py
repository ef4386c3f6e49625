"""Retraining from the loop: the stored transactions with the behaviour features they were served with and
the labels known at a cutoff, the label delay respected, the same set twice, published as the challenger."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from fraudflow.behaviour.definitions import NAMES as BEHAVIOUR
from fraudflow.cli.main import app as cli
from fraudflow.data.columns import AMOUNT_INDEX, N_FEATURES
from fraudflow.data.dataset import DatasetError
from fraudflow.data.history import generate_history
from fraudflow.manifest import Manifest
from fraudflow.registry import Registry
from fraudflow.training.pipeline import model_inputs
from fraudflow.training.served import load_served
from tests.registry_helpers import copy_registry

DAY = timedelta(days=1)


async def _store_history(db: asyncpg.Connection) -> tuple[list[datetime], np.ndarray]:
    """A synthetic history as the API would have stored it (its offline features as the served ones), and a
    chargeback a day after each fraud."""
    data = generate_history(40_000, fraud_rate=0.01, seed=6).time_ordered()
    assert data.history is not None
    served = model_inputs(data).full[:, N_FEATURES:]
    times = [datetime.fromtimestamp(t, UTC) for t in data.history.timestamp.tolist()]
    h = data.history
    rows: list[tuple[Any, ...]] = []
    for i in range(data.rows):
        behaviour = {n: (None if np.isnan(v) else float(v)) for n, v in zip(BEHAVIOUR, served[i].tolist(), strict=True)}
        rows.append(
            (
                times[i],
                times[i],
                h.user_id[i],
                "history",
                0,
                0.01,
                0.1,
                uuid.UUID(h.event_id[i]),
                "approve",
                "v0",
                float(data.features[i, AMOUNT_INDEX]),
                data.features[i].tolist(),
                orjson.dumps(behaviour).decode(),
                h.device_id[i],
                h.ip_address[i],
                h.country[i],
            )
        )
    await db.copy_records_to_table(
        "fraud_predictions",
        records=rows,
        columns=[
            "timestamp",
            "received_at",
            "user_id",
            "source",
            "fraud_prediction",
            "fraud_proba",
            "anomaly_score",
            "event_id",
            "decision",
            "model_version",
            "amount",
            "features",
            "behaviour",
            "device_id",
            "ip_address",
            "country",
        ],
    )
    frauds = np.flatnonzero(data.labels == 1)
    await db.copy_records_to_table(
        "labels",
        records=[(uuid.UUID(h.event_id[i]), "fraud", "chargeback", times[i] + DAY, "bank") for i in frauds.tolist()],
        columns=["event_id", "label", "source", "known_at", "author"],
    )
    return times, data.labels


async def test_retraining_from_the_database_is_the_same_set_twice_and_publishes_a_challenger(
    db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    times, labels = await _store_history(db)
    since, cutoff, delay = times[0], times[-1] + DAY, timedelta(days=3)
    first, about = await load_served(db, since, times[-1] + DAY, cutoff, delay)
    again, _ = await load_served(db, since, times[-1] + DAY, cutoff, delay)
    assert first.sha256() == again.sha256()
    horizon = cutoff - delay
    kept = sum(t < horizon for t in times)
    assert about["transactions"] == first.rows == kept
    assert about["left_out_too_recent"] == len(times) - kept
    assert about["labelled_fraud"] == int(labels[:kept].sum())  # every chargeback known a day later
    assert first.served is not None
    assert first.served.shape == (kept, len(BEHAVIOUR))

    root = copy_registry(tmp_path / "registry")
    champion = Registry(root).current()
    args = [
        "train",
        "--from-db",
        "--since",
        f"{since:%Y-%m-%d %H:%M:%S}",
        "--cutoff",
        f"{cutoff:%Y-%m-%d %H:%M:%S}",
        "--label-delay-days",
        "3",
        "--out",
        str(root),
        "--author",
        "ana",
    ]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    registry = Registry(root)
    assert registry.current() == champion  # never served
    challenger = registry.challenger()
    assert challenger is not None
    assert f"challenger {challenger}" in result.output
    card = Manifest.read(root / "versions" / challenger).metrics["data"]
    assert card["left_out_too_recent"] == about["left_out_too_recent"] > 0
    assert card["label_delay_days"] == 3
    assert registry.history()[-1]["action"] == "challenge"
    assert registry.history()[-1]["author"] == "ana"

    # A later cutoff does not change what an earlier one saw: labels known after it are not used.
    await db.execute("UPDATE labels SET known_at = known_at + interval '30 days'")
    late, late_about = await load_served(db, since, times[-1] + DAY, cutoff, delay)
    assert late_about["labelled_fraud"] == 0
    assert late_about["unlabelled_taken_as_legitimate"] == late.rows
    with pytest.raises(DatasetError, match="old enough"):
        await load_served(db, since, times[-1] + DAY, since + DAY, delay)
