"""The `fraudflow` executable: holds stop signals before the (slow) imports, then runs the CLI."""

from __future__ import annotations


def main() -> None:
    from fraudflow.cli.signals import hold_stop_signals

    hold_stop_signals()
    from fraudflow.cli.main import main as cli

    cli()
