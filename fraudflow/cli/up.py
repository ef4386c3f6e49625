"""`fraudflow up`: the whole pipeline on this machine, in one process tree."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated

import aiohttp
import asyncpg
import typer

from fraudflow.cli.runner import CommandError, fail, run, settings_or_exit, until_signal
from fraudflow.db.migrate import migrate
from fraudflow.db.target import resolve_database_url
from fraudflow.local.process import ChildServer
from fraudflow.local.services import EmbeddedServices, KinesisBackend
from fraudflow.net import port_is_free

STARTUP_DEADLINE_S = 90


async def _wait_http(url: str, part: ChildServer, deadline_s: float = STARTUP_DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < end:
            if part.process is not None and part.process.poll() is not None:
                raise CommandError(
                    f"{part.name} exited during start-up (code {part.process.returncode}); its log:\n{part.tail_log()}"
                )
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise CommandError(f"{part.name} did not answer {url} within {deadline_s} s; its log:\n{part.tail_log()}")


async def _first_exit(parts: list[ChildServer]) -> ChildServer:
    while True:
        for part in parts:
            if part.process is not None and part.process.poll() is not None:
                return part
        await asyncio.sleep(0.5)


def up(
    api_port: Annotated[int, typer.Option(help="Scoring API port on 127.0.0.1.")] = 8000,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port on 127.0.0.1.")] = 8050,
    rate: Annotated[float, typer.Option(min=0.1, help="Simulated transactions per second.")] = 5.0,
    simulate: Annotated[bool, typer.Option(help="Run the simulator.")] = True,
    kinesis: Annotated[KinesisBackend, typer.Option(help="Embedded Kinesis emulator.")] = KinesisBackend.MOTO,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default: FRAUDFLOW_DATA_DIR).")] = None,
) -> None:
    """Run the API, a consumer, the dashboard and the simulator on embedded services; Ctrl-C stops it all."""
    settings = settings_or_exit()
    for name, port in (("API", api_port), ("dashboard", dashboard_port)):
        if not port_is_free(port):
            fail(f"port {port} for the {name} is taken; choose another with --{name.lower()}-port", code=2)
    folder = (data_dir or settings.data_dir).expanduser().resolve()
    logs = folder / "logs"

    async def main() -> None:
        logs.mkdir(parents=True, exist_ok=True)
        embedded = None
        env = {"FRAUDFLOW_STREAM": settings.stream_name, "AWS_REGION": settings.aws_region}
        # Anything not configured runs embedded; what is configured takes precedence below.
        if settings.static_database_url is None or settings.kinesis_endpoint_url is None or settings.redis_url is None:
            embedded = EmbeddedServices(folder, backend=kinesis)
            typer.echo("starting the embedded PostgreSQL, Kinesis and Redis ...", err=True)
            await embedded.start(settings)
            env.update(embedded.env(settings))
        if settings.static_database_url:
            env["DATABASE_URL"] = settings.static_database_url
        if settings.kinesis_endpoint_url:
            env["AWS_ENDPOINT_URL_KINESIS"] = settings.kinesis_endpoint_url
        if settings.redis_url:
            env["FRAUDFLOW_REDIS_URL"] = settings.redis_url.get_secret_value()
        parts: list[ChildServer] = []
        try:
            conn = await asyncpg.connect(env.get("DATABASE_URL") or await resolve_database_url(settings))
            try:
                await migrate(conn)
            finally:
                await conn.close()
            parts = _parts(env, api_port, dashboard_port, rate, simulate, logs)
            # A configured URL may hold a password: only the embedded one is printed.
            features = "FRAUDFLOW_REDIS_URL" if settings.redis_url or embedded is None else embedded.redis.url
            for part in parts:
                part.start()
            await _wait_http(f"http://127.0.0.1:{api_port}/readyz", parts[0])
            await _wait_http(f"http://127.0.0.1:{dashboard_port}/", parts[2])
            typer.echo(
                f"\nfraudflow is up:\n  API        http://127.0.0.1:{api_port}/docs\n"
                f"  dashboard  http://127.0.0.1:{dashboard_port}/\n  logs       {logs}\n"
                f"  database   {env['DATABASE_URL']}\n  features   {features}\nPress Ctrl-C to stop."
            )
            stopped = await until_signal(_first_exit(parts))
            if stopped is not None:
                raise CommandError(
                    f"{stopped.name} stopped unexpectedly (code {stopped.process.returncode}); "  # type: ignore[union-attr]
                    f"its log:\n{stopped.tail_log()}"
                )
        finally:
            for part in reversed(parts):
                await asyncio.to_thread(part.stop, 15.0)
            if embedded is not None:
                await embedded.stop()
            typer.echo("stopped", err=True)

    run(main)


# As the image runs the API: a protocol that bounds pipelining and slow clients; idle connections kept longer
# than clients' pools keep them (httpx 5 s, aiohttp 15 s), or a request sent as the server closes is reset; and
# no uvicorn access log (api/middleware.py writes a structured one: a second, plain one only costs CPU).
API_SERVER_OPTIONS = ("--http", "api.protocol:BoundedHttpTools", "--timeout-keep-alive", "75", "--no-access-log")


def api_command(port: int) -> list[str]:
    """The API on a loopback port, as `fraudflow up` runs it."""
    loopback = ("--host", "127.0.0.1", "--port", str(port))
    return [sys.executable, "-m", "uvicorn", "api.main:app", *API_SERVER_OPTIONS, *loopback]


def _parts(
    env: dict[str, str], api_port: int, dashboard_port: int, rate: float, simulate: bool, logs: Path
) -> list[ChildServer]:
    python = sys.executable
    parts = [
        ChildServer(
            "api",
            api_command(api_port),
            env=env,
            log_path=logs / "api.log",
        ),
        ChildServer(
            "consumer",
            # Drift every 5 minutes, not every hour: a local run shows its series while it is being watched.
            [python, "-m", "fraudflow.cli", "consume", "--worker-id", "local-consumer", "--drift-interval", "300"],
            env=env,
            log_path=logs / "consumer.log",
        ),
        ChildServer(
            "dashboard",
            [python, "-m", "fraudflow.cli", "dashboard", "--port", str(dashboard_port)],
            env=env,
            log_path=logs / "dashboard.log",
        ),
    ]
    if simulate:
        parts.append(
            ChildServer(
                "simulator",
                [
                    python,
                    "-m",
                    "fraudflow.cli",
                    "simulate",
                    "--api-url",
                    f"http://127.0.0.1:{api_port}",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(10 * 365 * 24 * 3600),
                    "--max-error-rate",
                    "1",
                ],
                env=env,
                log_path=logs / "simulator.log",
            )
        )
    return parts
