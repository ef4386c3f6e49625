"""The `fraudflow` command."""

from __future__ import annotations

import typer

from fraudflow import __version__
from fraudflow.cli import consume, db, features, labels, policy, registry, stream
from fraudflow.cli.dashboard import dashboard
from fraudflow.cli.healthcheck import healthcheck
from fraudflow.cli.models import synth, train
from fraudflow.cli.services import services
from fraudflow.cli.signals import release_stop_signals
from fraudflow.cli.simulate import simulate
from fraudflow.cli.up import up

app = typer.Typer(
    help="fraudflow: real-time fraud scoring, streaming and storage.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    # Only the consumer worker stops gracefully on a signal held during start-up (fraudflow.cli.signals).
    if ctx.invoked_subcommand != "consume":
        release_stop_signals()


app.add_typer(db.app, name="db")
app.add_typer(consume.app, name="consume")
app.add_typer(stream.app, name="stream")
app.add_typer(features.app, name="features")
app.add_typer(registry.app, name="models")
app.add_typer(labels.app, name="labels")
app.add_typer(policy.rules_app, name="rules")
app.add_typer(policy.lists_app, name="lists")
app.command("services")(services)
app.command("synth")(synth)
app.command("train")(train)
app.command("dashboard")(dashboard)
app.command("simulate")(simulate)
app.command("up")(up)
app.command("healthcheck")(healthcheck)


@app.command()
def version() -> None:
    """Print the fraudflow version."""
    typer.echo(__version__)


def main() -> None:
    app()
