"""`fraudflow simulate`: replay transactions against a scoring API."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from fraudflow.cli.runner import fail, run, settings_or_exit
from fraudflow.data.columns import FEATURES
from fraudflow.data.dataset import DatasetError
from fraudflow.manifest import Manifest
from fraudflow.registry import default_models_root, resolve
from fraudflow.simulation.chargebacks import Chargebacks
from fraudflow.simulation.population import users
from fraudflow.simulation.replay import Plan, Replayer, load_rows


def predict_url(base: str) -> str:
    """The reference design's CHALICE_API_URL is the API's base URL; /predict is appended."""
    return base.rstrip("/") + "/predict"


def simulate(
    api_url: Annotated[
        str, typer.Option(envvar="CHALICE_API_URL", help="Scoring API base URL (the reference design's variable).")
    ] = "http://127.0.0.1:8000",
    rate: Annotated[float, typer.Option(min=0, help="Events per second (0: as fast as concurrency allows).")] = 20.0,
    poisson: Annotated[bool, typer.Option(help="Poisson arrivals instead of a constant rate.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at most.")] = 16,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many requests.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    users_count: Annotated[int, typer.Option("--users", min=1, help="Size of the user pool.")] = 2_000,
    data: Annotated[Path | None, typer.Option(help="creditcard.csv to replay (its test split).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="FRAUDFLOW_SIMULATE_API_KEY", help="API key to send.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    record: Annotated[Path | None, typer.Option(help="Write each answer (event id, score) as JSON lines.")] = None,
    max_error_rate: Annotated[float, typer.Option(min=0, max=1, help="Exit 1 above this share of failures.")] = 0.01,
    chargeback_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of the frauds sent that come back as chargebacks (0: none).")
    ] = 0.8,
    chargeback_delay: Annotated[
        float, typer.Option(min=0, help="Mean seconds before a chargeback is posted to /labels (real ones: weeks).")
    ] = 60.0,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="FRAUDFLOW_SIMULATE_ADMIN_KEY", help="Admin key for POST /labels (loopback: none needed)."),
    ] = None,
) -> None:
    """Send realistic transactions to /predict at a controlled rate; print progress and a summary."""
    settings = settings_or_exit()
    if max_requests is None and duration is None:
        fail("give --max-requests or --duration (or both)", code=2)
    try:
        # The models the API serves (FRAUDFLOW_MODELS_DIR), not the shipped ones: their test boundary, and
        # whether they read behaviour features (then a history of users with their habits is replayed).
        served = Manifest.read(resolve(settings.models_dir or default_models_root()))
        test_from, behaviour = served.training_data.test_from_time, served.features != list(FEATURES)
    except (OSError, ValueError):
        test_from, behaviour = None, False
    try:
        rows, labels, history, source = load_rows(data, test_from, seed, history=behaviour)
    except DatasetError as error:
        fail(str(error), code=2)
    plan = Plan(rate=rate, poisson=poisson, concurrency=concurrency, max_requests=max_requests, duration_s=duration)
    console = Console(stderr=True)
    console.print(
        f"replaying {source} rows to {predict_url(api_url)} at "
        f"{'max' if rate == 0 else f'{rate:g}'}/s ({'Poisson' if poisson else 'constant'})"
    )

    chargebacks = None
    if chargeback_share > 0:
        headers = {"X-API-Key": admin_key} if admin_key else {}
        labels_url = api_url.rstrip("/") + "/labels"
        chargebacks = Chargebacks(labels_url, chargeback_share, chargeback_delay, random.Random(seed + 1), headers)

    async def main() -> float:
        sink = record.open("w") if record else None
        try:
            replayer = Replayer(
                predict_url(api_url),
                rows,
                labels,
                users(users_count, random.Random(seed)),
                plan,
                api_key=api_key,
                seed=seed,
                record=sink,
                history=history,
                chargebacks=chargebacks,
            )
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                stats = await replayer.run(progress=live.update)
                live.update(stats.line())
        finally:
            if sink:
                sink.close()
        console.print(f"done: {stats.line()}")
        if chargebacks is not None:
            console.print(f"{chargebacks.stats.line()}; {chargebacks.pending} not yet due when the run ended")
        return stats.failed / stats.sent if stats.sent else 0.0

    error_rate = run(main)
    if error_rate > max_error_rate:
        fail(f"error rate {error_rate:.1%} is above --max-error-rate {max_error_rate:.1%}")
