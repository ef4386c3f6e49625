"""The real stack as a user runs it: `fraudflow up` (API, consumer, dashboard as separate processes on the
embedded services), `fraudflow simulate` against it, and the dashboard read in a real browser."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import psutil
import pytest

from bench.stack import launch_up
from fraudflow.net import free_port
from tests.consumer_helpers import wait_until

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from selenium.webdriver import Chrome as WebDriver

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 300


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    up = launch_up(tmp_path)
    children = {p.pid for p in psutil.Process(up.process.pid).children(recursive=True)}
    yield {
        "process": up.process,
        "api": up.api,
        "dashboard": up.dashboard,
        "database": up.database,
        "children": children,
        "data": up.data,
    }
    if up.process.poll() is None:
        up.process.kill()


async def test_every_answer_is_stored_once_with_its_scores_and_the_dashboard_agrees(
    stack: dict[str, object], tmp_path: Path, browser: WebDriver
) -> None:
    answers = tmp_path / "answers.jsonl"
    simulated = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "fraudflow.cli",
            "simulate",
            "--api-url",
            str(stack["api"]),
            "--max-requests",
            str(REQUESTS),
            "--rate",
            "0",
            "--concurrency",
            "16",
            "--record",
            str(answers),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    answered = {a["event_id"]: a for a in map(json.loads, answers.read_text().splitlines())}
    assert len(answered) == REQUESTS

    conn = await asyncpg.connect(str(stack["database"]))
    try:

        async def all_stored() -> bool:
            return int(await conn.fetchval("SELECT count(*) FROM fraud_predictions")) >= REQUESTS

        await wait_until(all_stored, deadline_s=60, what=f"{REQUESTS} rows")
        rows = await conn.fetch("SELECT event_id::text AS id, fraud_proba, decision FROM fraud_predictions")
        sql_count = int(await conn.fetchval("SELECT count(*) FROM fraud_predictions"))

        # The API's heartbeats reach the database through the stream: every answer counted, every record
        # counted as published, by one process.
        async def all_counted() -> bool:
            published = await conn.fetchval("SELECT sum(published) FROM api_heartbeats")
            return published is not None and int(published) >= REQUESTS

        await wait_until(all_counted, deadline_s=30, what="heartbeats counting every record")
        counts = await conn.fetchrow(
            """SELECT count(DISTINCT process) AS processes, sum(answered) AS answered, sum(published) AS published,
                      sum(unavailable) AS unavailable FROM api_heartbeats"""
        )
    finally:
        await conn.close()
    assert len(rows) == REQUESTS
    assert counts is not None
    assert dict(counts) == {"processes": 1, "answered": REQUESTS, "published": REQUESTS, "unavailable": 0}
    assert {r["id"] for r in rows} == set(answered)  # each answered event exactly once, nothing else
    for r in rows:
        assert r["fraud_proba"] == pytest.approx(answered[r["id"]]["fraud_proba"], rel=1e-6)
        assert r["decision"] == answered[r["id"]]["decision"]

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(str(stack["dashboard"]))
    WebDriverWait(browser, 30).until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), f"{sql_count:,}"))
    assert "API: 1 process(es)" in browser.find_element(By.ID, "kpi-health").text

    process = stack["process"]
    process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert await asyncio.to_thread(process.wait, 60) == 0  # type: ignore[attr-defined]
    children = stack["children"]
    assert isinstance(children, set)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not (Path(str(stack["data"])) / "pgdata" / "postmaster.pid").exists()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDFLOW_", "AWS_", "DATABASE_URL"))}


def test_up_reports_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fraudflow.cli", "up", "--api-port", str(port), "--data-dir", str(tmp_path)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port} for the API is taken" in result.stderr


def test_up_stops_everything_when_a_part_fails_to_start(tmp_path: Path) -> None:
    # In production the API refuses to start without API keys: `up` must stop the rest and say why.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudflow.cli",
            "up",
            "--api-port",
            str(free_port()),
            "--dashboard-port",
            str(free_port()),
            "--no-simulate",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env={**_env(), "FRAUDFLOW_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "api exited during start-up" in result.stderr
    assert "FRAUDFLOW_API_KEYS" in result.stderr
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
