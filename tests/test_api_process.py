"""The API as it is deployed: `uvicorn api.main:app` in its own process, configured by environment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.schemas import EXAMPLE_REQUEST
from fraudflow.cli.up import api_command
from fraudflow.config import Settings
from fraudflow.net import free_port
from tests.faultproxy import FaultProxy
from tests.streams import read_stream


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDFLOW_", "AWS_", "DATABASE_URL"))}
    env.update(
        {
            "AWS_ENDPOINT_URL_KINESIS": settings.kinesis_endpoint_url or "",
            "AWS_REGION": settings.aws_region,
            "FRAUDFLOW_STREAM": settings.stream_name,
            "FRAUDFLOW_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


@contextmanager
def uvicorn(settings: Settings, log: Path, **extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run the API; its log goes to a file (an unread pipe would fill up and block the server)."""
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            api_command(port),
            env=_env(settings, **extra),
            cwd=_project_root(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"uvicorn did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


async def test_sigterm_flushes_what_was_acknowledged(
    proxied_settings: Settings, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    fault_proxy.delay("PutRecords", 1.0, times=2)  # keep records in the buffer when SIGTERM arrives
    log = tmp_path / "api.log"
    with uvicorn(proxied_settings, log, FRAUDFLOW_DELIVERY_MODE="async") as (process, url):
        async with httpx.AsyncClient(base_url=url) as http:
            bodies = [
                {**EXAMPLE_REQUEST, "metadata": {**EXAMPLE_REQUEST["metadata"], "user_id": f"u{i}"}} for i in range(40)
            ]
            responses = await asyncio.gather(*(http.post("/predict", json=b) for b in bodies))
        assert all(r.status_code == 200 for r in responses)
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    output = log.read_text()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM)
    assert '"undelivered": 0' in output
    assert '"event": "api stopped"' in output
    records = await read_stream(proxied_settings)
    assert len(records) == 40


def test_schemathesis_finds_no_server_error(settings: Settings, tmp_path: Path) -> None:
    with uvicorn(settings, tmp_path / "api.log") as (_, url):
        result = subprocess.run(
            [
                "schemathesis",
                "run",
                f"{url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                os.environ.get("FRAUDFLOW_SCHEMATHESIS_EXAMPLES", "25"),
                "--phases",
                "examples,coverage,fuzzing",
                "--generation-deterministic",
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-4000:]


def test_bad_setting_stops_uvicorn_with_one_line(settings: Settings, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(free_port())],
        env=_env(settings, FRAUDFLOW_ENV="production"),
        cwd=_project_root(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "error: missing setting FRAUDFLOW_API_KEYS: required when FRAUDFLOW_ENV=production" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["/healthz", "/docs", "/openapi.json"])
def test_served_endpoints(settings: Settings, path: str, tmp_path: Path) -> None:
    with uvicorn(settings, tmp_path / "api.log") as (_, url):
        assert httpx.get(url + path).status_code == 200
