"""`fraudflow dashboard`: the live dashboard (Plotly Dash) on a local port."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from fraudflow.cli.runner import fail, settings_or_exit
from fraudflow.config import SettingsError
from fraudflow.db.target import resolve_database
from fraudflow.logging import get_logger
from fraudflow.net import is_loopback, port_is_free

log = get_logger("fraudflow.dashboard")


def dashboard(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8050,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (gunicorn).")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Threads per worker.")] = 8,
) -> None:
    """Serve the dashboard under gunicorn until Ctrl-C/SIGTERM (or put dash_app.wsgi:server under any WSGI
    server)."""
    from dash_app.serve import serve

    settings = settings_or_exit()
    if not settings.dashboard_credentials and not is_loopback(host):
        fail(
            f"refusing to serve on {host} without FRAUDFLOW_DASHBOARD_USERS (user:password,...): "
            "without users the dashboard binds to loopback only",
            code=2,
        )
    if not port_is_free(port, "127.0.0.1" if host == "localhost" else host):
        fail(f"port {port} on {host} is taken; choose another with --port", code=2)
    try:
        database = asyncio.run(resolve_database(settings))
    except SettingsError as error:
        fail(str(error), code=2)
    if not settings.dashboard_credentials:
        log.warning("no dashboard users configured (FRAUDFLOW_DASHBOARD_USERS): serving loopback clients only")
    typer.echo(f"dashboard on http://{host}:{port}/  (Ctrl-C to stop)")
    serve(settings, database, host, port, workers, threads)
    typer.echo("dashboard stopped", err=True)
