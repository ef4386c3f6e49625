"""`fraudflow synth` and `fraudflow train`: data and models."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from fraudflow.cli.runner import CommandError, fail, settings_or_exit, with_database
from fraudflow.data.dataset import DEFAULT_PATH, DatasetError, load_creditcard, write_creditcard
from fraudflow.data.history import generate_history
from fraudflow.data.synthetic import DEFAULT_FRAUD_RATE, generate
from fraudflow.registry import Registry
from fraudflow.training.served import load_served


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def synth(
    out: Annotated[Path, typer.Option(help="CSV file to write (creditcard.csv layout).")] = DEFAULT_PATH,
    rows: Annotated[int, typer.Option(min=1, help="Number of transactions.")] = 284_807,
    fraud_rate: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of frauds.")] = DEFAULT_FRAUD_RATE,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file).")] = 0,
    history: Annotated[
        bool,
        typer.Option(
            help="A history of persistent users with devices, IPs and places, and fraud scenarios (card testing, "
            "account takeover, impossible travel, mule devices); their metadata follow Class."
        ),
    ] = False,
) -> None:
    """Generate a synthetic creditcard-like data set (Time, V1..V28, Amount, Class). Not real data."""
    started = time.perf_counter()
    make = generate_history if history else generate
    dataset = make(rows, fraud_rate=fraud_rate, seed=seed).time_ordered()
    write_creditcard(dataset, out)
    typer.echo(f"wrote {out}: {dataset.rows} rows, {dataset.frauds} frauds ({time.perf_counter() - started:.1f}s)")


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="creditcard.csv to train on (default: dataset/creditcard.csv if present, else synthetic data)."
        ),
    ] = None,
    synthetic_rows: Annotated[int | None, typer.Option(min=100, help="Train on this many synthetic rows.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Model directory (default: FRAUDFLOW_MODELS_DIR or models/).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the synthetic data and the models.")] = 0,
    synthetic_history: Annotated[
        bool, typer.Option(help="With --synthetic-rows: a synthetic history (behaviour features), as synth --history.")
    ] = False,
    review_cost: Annotated[float, typer.Option(min=0.01, help="Cost of one manual review.")] = 5.0,
    chargeback_fee: Annotated[float, typer.Option(min=0.0, help="Added to the amount of a fraud approved.")] = 15.0,
    false_decline_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of the amount lost when a good payment is declined.")
    ] = 0.25,
    false_decline_fixed: Annotated[
        float, typer.Option(min=0.0, help="Fixed cost of declining a good payment (goodwill).")
    ] = 2.0,
    review_capacity: Annotated[
        float, typer.Option(min=0.0001, max=1.0, help="Share of transactions the team can review.")
    ] = 0.02,
    promote: Annotated[
        bool, typer.Option(help="Serve the new version once published (else it waits for `models promote`).")
    ] = True,
    author: Annotated[str | None, typer.Option(help="Who publishes (the registry's history); default: login")] = None,
    from_db: Annotated[
        bool,
        typer.Option(
            help="Train on the stored transactions (DATABASE_URL) with the behaviour features they were served "
            "with and the labels known at --cutoff; the result is published as the challenger, never served."
        ),
    ] = False,
    since: Annotated[datetime | None, typer.Option(help="With --from-db: first transaction time (UTC).")] = None,
    until: Annotated[
        datetime | None, typer.Option(help="With --from-db: end of the window (UTC; default now).")
    ] = None,
    cutoff: Annotated[
        datetime | None, typer.Option(help="With --from-db: labels known by then count (UTC; default now).")
    ] = None,
    label_delay_days: Annotated[
        float,
        typer.Option(min=0.0, help="With --from-db: transactions more recent than the cutoff minus this are left out."),
    ] = 30.0,
) -> None:
    """Train the fraud classifier and anomaly detector, export them to ONNX and write the manifest. A data set
    with metadata (synth --history) trains on behaviour features too, computed by replaying it in time order.
    The model decides by expected cost (the cost options; docs/decisions.md), with cut points chosen on the
    validation split."""
    if sum((data is not None, synthetic_rows is not None, from_db)) > 1:
        fail("give one of --data, --synthetic-rows and --from-db", code=2)
    if from_db and since is None:
        fail("--from-db needs --since (the first transaction time of the window)", code=2)
    try:
        from fraudflow.training.export import ParityError
        from fraudflow.training.pipeline import TrainingConfig, TrainingError, format_report
        from fraudflow.training.pipeline import train as run_training
        from fraudflow.training.policy import Costs
    except ImportError:
        fail("training needs the `train` extra: pip install 'fraudflow[train]'")
    settings = settings_or_exit()
    about = None
    try:
        if from_db:
            assert since is not None
            now = datetime.now(UTC)
            dataset, about = with_database(
                functools.partial(
                    load_served,
                    since=_utc(since),
                    until=_utc(until) if until else now,
                    cutoff=_utc(cutoff) if cutoff else now,
                    label_delay=timedelta(days=label_delay_days),
                )
            )
            typer.echo(
                f"{about['transactions']:,} stored transactions, {about['labelled_fraud']:,} labelled fraud at the "
                f"cutoff; {about['left_out_too_recent']:,} left out, too recent for their chargebacks"
            )
        elif synthetic_rows is None and (data is not None or DEFAULT_PATH.exists()):
            dataset = load_creditcard(data or DEFAULT_PATH)
        else:
            make = generate_history if synthetic_history else generate
            dataset = make(synthetic_rows or 284_807, seed=seed)
            typer.secho("training on SYNTHETIC data: scores are for demonstration only", fg="yellow", err=True)
        costs = Costs(review_cost, chargeback_fee, false_decline_share, false_decline_fixed, review_capacity)
        config = TrainingConfig(seed=seed, costs=costs)
        root = out or settings.models_dir or Path("models")
        report = run_training(dataset, root, config, about)
    except (DatasetError, TrainingError, ParityError, CommandError) as error:
        fail(str(error))
    typer.echo(format_report(report))
    version = report.manifest.version
    typer.echo(f"\npublished version {version} in {report.folder}")
    registry = Registry(root)
    if from_db:  # from the loop: tried on live traffic beside the champion before anyone promotes it
        if version == registry.current():
            typer.echo(f"{version} is already the served version: nothing to challenge")
            return
        previous = registry.challenge(version, author)
        typer.echo(
            f"challenger {version}" + (f" (replacing {previous})" if previous else "") + "; API processes score it "
            "in shadow on POST /admin/reload-models; compare on the dashboard's /models page, then "
            "`fraudflow models promote`"
        )
    elif promote:
        previous = registry.promote(version, author)
        typer.echo(
            f"serving {version} from {root} (was {previous or 'none'}); API processes load it on "
            "POST /admin/reload-models"
        )
    else:
        typer.echo(f"not served: `fraudflow models promote {version}` when it should be")
