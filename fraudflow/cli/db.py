"""`fraudflow db`: schema migrations."""

from __future__ import annotations

import asyncpg
import typer

from fraudflow.cli.runner import CommandError, run, settings_or_exit
from fraudflow.db.migrate import migrate, status
from fraudflow.db.target import resolve_database

app = typer.Typer(help="Database schema: apply migrations and show their state.", no_args_is_help=True)


async def _connect() -> asyncpg.Connection:
    settings = settings_or_exit()
    database = await resolve_database(settings)  # its TLS mode too (verify-full in production)
    try:
        return await asyncpg.connect(**database.connect_kwargs(), timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        raise CommandError(f"cannot connect to PostgreSQL: {error}") from None


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations (idempotent; safe to run from several processes at once)."""

    async def main() -> None:
        conn = await _connect()
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        if not applied:
            typer.echo("schema is up to date")
        for migration in applied:
            typer.echo(f"applied {migration.version:04d}_{migration.name}")

    run(main)


@app.command("status")
def status_command() -> None:
    """List migrations and whether each is applied; exits 1 when some are pending."""

    async def main() -> int:
        conn = await _connect()
        try:
            states = await status(conn)
        finally:
            await conn.close()
        for state in states:
            when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
            typer.echo(f"{state.version:04d}_{state.name:<30} {when}")
        return sum(state.applied_at is None for state in states)

    pending = run(main)
    if pending:
        raise typer.Exit(1)
