"""`fraudflow models`: the published model versions, which one is served, promotion and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fraudflow.cli.runner import fail, settings_or_exit
from fraudflow.registry import Registry, RegistryError, default_models_root
from fraudflow.scoring import ModelError, ModelSet

app = typer.Typer(
    help="Published model versions (FRAUDFLOW_MODELS_DIR or models/): list, promote, roll back.",
    no_args_is_help=True,
)

Root = Annotated[Path | None, typer.Option("--root", help="The registry (default: FRAUDFLOW_MODELS_DIR or models/)")]
Author = Annotated[str | None, typer.Option(help="Who makes the change (the history); default: login name")]


def _registry(root: Path | None) -> Registry:
    settings = settings_or_exit()
    return Registry(root or settings.models_dir or default_models_root())


@app.command("list")
def list_versions(root: Root = None) -> None:
    """Every published version, newest first; * marks the one served."""
    registry = _registry(root)
    versions = registry.versions()
    if not versions:
        typer.echo(f"no published versions in {registry.root}")
    for version in versions:
        s = version.summary()
        mark = "*" if version.current else " "
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
def promote(version: str, root: Root = None, author: Author = None) -> None:
    """Serve a published version (verified first, then the pointer switched atomically; audited)."""
    _switch(_registry(root), version, author, "promote")


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
    """Every promotion and rollback, oldest first."""
    for entry in _registry(root).history():
        typer.echo(
            f"{entry['at']}  {entry['action']:<8} {entry['version']}  (was {entry['previous']})  by {entry['author']}"
        )
