"""The simulator's population: realistic metadata, and frauds that look different from their owner's habits."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from api.schemas import Metadata
from fraudflow.cli.simulate import predict_url
from fraudflow.config import Settings
from fraudflow.data.dataset import DatasetError, write_creditcard
from fraudflow.data.synthetic import generate
from fraudflow.registry import default_models_dir
from fraudflow.simulation.chargebacks import Chargebacks
from fraudflow.simulation.population import metadata, users
from fraudflow.simulation.replay import Plan, Replayer, load_rows
from tests.consumer_helpers import worker
from tests.test_api_process import uvicorn


def test_metadata_is_valid_for_the_api_and_uses_documentation_addresses() -> None:
    rng = random.Random(1)
    for user in users(50, rng):
        meta = metadata(user, is_fraud=rng.random() < 0.5, rng=rng)
        Metadata.model_validate(meta)
        address = ipaddress.ip_address(meta["ip_address"])
        assert any(address in ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))


def test_frauds_break_the_users_habits_more_often() -> None:
    rng = random.Random(2)
    people = users(500, rng)

    def unusual(is_fraud: bool) -> float:
        count = 0
        for user in people:
            meta = metadata(user, is_fraud, rng)
            device = (
                meta["device_info"]["device_type"],
                meta["device_info"]["os_version"],
                meta["device_info"]["app_version"],
            )
            count += device not in user.devices or meta["geo"]["country"] != user.city[0]
        return count / len(people)

    assert unusual(True) > 0.5
    assert unusual(False) == 0.0


def test_replayed_rows_come_from_the_test_period_only() -> None:
    rows, labels, _, source = load_rows(None, 100_000.0, seed=3)
    assert source == "synthetic"
    assert rows[:, 0].min() >= 100_000.0
    assert len(rows) == len(labels) > 0


def test_nothing_past_the_served_models_test_boundary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "early.csv"
    write_creditcard(generate(500, seed=5), path)  # Time within the first two days
    with pytest.raises(DatasetError, match="none of the 500 rows .* test boundary"):
        load_rows(path, 10_000_000.0, seed=3)


def test_simulate_reads_the_boundary_of_the_served_models(tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(default_models_dir(), served)
    manifest = json.loads((served / "manifest.json").read_text())
    manifest["training_data"]["test_from_time"] = 10_000_000.0  # no replayable row is that late
    (served / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "FRAUDFLOW_MODELS_DIR": str(served)}
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "simulate", "--max-requests", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    assert "test boundary" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_url_joins_the_reference_base_url() -> None:
    assert predict_url("https://abc.execute-api.eu-west-1.amazonaws.com/api/") == (
        "https://abc.execute-api.eu-west-1.amazonaws.com/api/predict"
    )
    assert predict_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/predict"


def test_a_history_is_replayed_with_its_users_devices_and_gaps(tmp_path: Path) -> None:
    """For models that read behaviour features: each row goes out as its user, from its device, IP and place,
    at its own event time moved to now (so a user's gaps are the history's, whatever the replay rate)."""
    rows, labels, history, source = load_rows(None, 600_000.0, seed=3, history=True)
    assert source == "synthetic history"
    assert history is not None
    assert rows[:, 0].min() >= 600_000.0
    assert len(history.user_id) == len(rows)
    plan = Plan(rate=0, poisson=False, concurrency=1, max_requests=3, duration_s=None)
    replayer = Replayer("http://unused", rows, labels, [], plan, history=history)
    first, second = replayer._body(0)["metadata"], replayer._body(1)["metadata"]
    assert (first["user_id"], first["device_info"]["device_id"]) == (history.user_id[0], history.device_id[0])
    assert first["geo"]["country"] == history.country[0]
    gap = datetime.fromisoformat(second["timestamp"]) - datetime.fromisoformat(first["timestamp"])
    assert gap.total_seconds() == pytest.approx(history.timestamp[1] - history.timestamp[0], abs=1e-3)


async def test_the_simulator_sends_chargebacks_for_its_frauds_once_they_are_stored(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The bank's side of the loop: the simulator's frauds come back as chargebacks through POST /labels,
    for events the pipeline stored (an event not stored yet is tried again later)."""
    rows = generate(6, fraud_rate=0.0, seed=4).features
    labels = np.array([1, 0, 1, 0, 1, 0], dtype=np.int8)
    assert settings.static_database_url
    with uvicorn(settings, tmp_path / "api.log", DATABASE_URL=settings.static_database_url) as (_, url):
        chargebacks = Chargebacks(url + "/labels", 1.0, 0.2, random.Random(1), {}, retry_after_s=0.5)
        plan = Plan(rate=0, poisson=False, concurrency=2, max_requests=6, duration_s=None)
        replayer = Replayer(url + "/predict", rows, labels, users(4, random.Random(2)), plan, chargebacks=chargebacks)
        async with worker(settings, "w1"):
            stats = await replayer.run()
    assert stats.ok == 6
    assert chargebacks.stats.sent == 3, chargebacks.stats.line()
    stored = await db.fetch("SELECT label, source, author FROM latest_labels")
    assert [(r["label"], r["source"], r["author"]) for r in stored] == [("fraud", "chargeback", "simulated bank")] * 3
