"""`fraudflow healthcheck`: the container health probe, one image for every role (no curl in a slim image)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Annotated

import typer

DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def healthcheck(
    url: Annotated[
        str, typer.Option(envvar="FRAUDFLOW_HEALTHCHECK_URL", help="URL that answers 200 while the process is healthy.")
    ] = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the answer.")] = 3.0,
) -> None:
    """Exit 0 when URL answers 2xx, 1 otherwise (Docker HEALTHCHECK, compose and ECS health checks)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the operator sets the URL)
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as error:
        typer.echo(f"unhealthy: {url}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"healthy: {url} answered {status}")
