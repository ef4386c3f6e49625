"""`fraudflow models`: the published model versions, which one is served, promotion and rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from fraudflow.cli.runner import fail, settings_or_exit, with_database
from fraudflow.drift import ACT, WATCH, DriftReport, watch
from fraudflow.registry import Registry, RegistryError, default_models_root
from fraudflow.scoring import ModelError, ModelSet

app = typer.Typer(
    help="Published model versions (FRAUDFLOW_MODELS_DIR or models/): list, promote, roll back, challenge.",
    no_args_is_help=True,
)

Root = Annotated[Path | None, typer.Option("--root", help="The registry (default: FRAUDFLOW_MODELS_DIR or models/)")]
Author = Annotated[str | None, typer.Option(help="Who makes the change (the history); default: login name")]


def _registry(root: Path | None) -> Registry:
    settings = settings_or_exit()
    return Registry(root or settings.models_dir or default_models_root())


@app.command("list")
def list_versions(root: Root = None) -> None:
    """Every published version, newest first; * marks the one served, c the challenger."""
    registry = _registry(root)
    versions = registry.versions()
    if not versions:
        typer.echo(f"no published versions in {registry.root}")
    for version in versions:
        s = version.summary()
        mark = "*" if version.current else "c" if version.challenger else " "
        typer.echo(
            f"{mark} {s['version']}  {s.get('created_at', '-')}  PR-AUC {s.get('pr_auc', '-')}  "
            f"cost/1000 {s.get('cost_per_1000', '-')}  {s.get('data', s.get('problem', ''))}"
        )


def _switch(registry: Registry, version: str, author: str | None, action: str) -> None:
    try:
        ModelSet(registry.folder(version))  # every load check, before anything is served
        previous = registry.promote(version, author, action)
    except (RegistryError, ModelError) as error:
        fail(f"{error}; still serving {registry.current() or 'the bundled set'}")
    typer.echo(f"serving {version} (was {previous or 'none'}); API processes load it on POST /admin/reload-models")


@app.command("promote")
def promote(
    version: Annotated[str | None, typer.Argument(help="The version to serve (default: the challenger)")] = None,
    root: Root = None,
    author: Author = None,
) -> None:
    """Serve a published version, by default the challenger (verified first, then the pointer switched
    atomically; audited)."""
    registry = _registry(root)
    if version is None and (version := registry.challenger()) is None:
        fail("name the version to promote: there is no challenger (`fraudflow models list`)")
    _switch(registry, version, author, "promote")


@app.command("challenge")
def challenge(version: str, root: Root = None, author: Author = None) -> None:
    """Score a published version in shadow next to the served one: it decides nothing, its scores are stored
    for comparison (the dashboard's models page); audited."""
    registry = _registry(root)
    try:
        ModelSet(registry.folder(version))
        previous = registry.challenge(version, author)
    except (RegistryError, ModelError) as error:
        fail(str(error))
    replaced = f" (replacing {previous})" if previous else ""
    typer.echo(f"challenger {version}{replaced}; API processes load it on POST /admin/reload-models")


@app.command("end-challenge")
def end_challenge(root: Root = None, author: Author = None) -> None:
    """Stop scoring the challenger in shadow (audited)."""
    try:
        version = _registry(root).end_challenge(author)
    except RegistryError as error:
        fail(str(error))
    typer.echo(f"no challenger (was {version}); API processes stop scoring it on POST /admin/reload-models")


@app.command("rollback")
def rollback(root: Root = None, author: Author = None) -> None:
    """Serve again the version the current one replaced."""
    registry = _registry(root)
    try:
        version = registry.previous()
    except RegistryError as error:
        fail(str(error))
    _switch(registry, version, author, "rollback")


@app.command("history")
def history(root: Root = None) -> None:
    """Every promotion, rollback and challenge, oldest first."""
    for entry in _registry(root).history():
        typer.echo(
            f"{entry['at']}  {entry['action']:<13} {entry['version'] or '-'}  (was {entry['previous']})  "
            f"by {entry['author']}"
        )


def _flag(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (" ACT" if value > ACT else " watch" if value > WATCH else "")


@app.command("drift")
def drift(
    hours_back: Annotated[int, typer.Option("--hours", min=1, max=24 * 31, help="Hours to measure, up to now")] = 1,
    root: Root = None,
) -> None:
    """Measure drift now, as the consumer does every hour: PSI of the score and of each model input against
    the version's training reference, and the decision and degraded shares; stored in drift_reports."""
    registry = _registry(root)

    async def work(conn: asyncpg.Connection) -> list[DriftReport]:
        return await watch(conn, datetime.now(UTC), registry.root, count=hours_back)

    reports = with_database(work)
    if not reports:
        typer.echo("no transactions in the window")
    for r in reports:
        top = r.max_feature
        typer.echo(
            f"{r.window_start:%Y-%m-%d %H:00}  {r.model_version}  {r.transactions:>8,} transactions  "
            f"score PSI {_flag(r.score_psi)}  "
            + (f"top input {top[0]} {_flag(top[1])}  " if top else "no reference  ")
            + f"decline {r.shares['decline']:.2%} review {r.shares['review']:.2%} "
            f"degraded {r.shares['degraded']:.2%}"
        )
