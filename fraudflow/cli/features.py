"""`fraudflow features`: the online feature store."""

from __future__ import annotations

import asyncpg
import typer
from redis.exceptions import RedisError

from fraudflow.behaviour.online import feature_store
from fraudflow.behaviour.rebuild import rebuild as replay_into
from fraudflow.cli.runner import CommandError, fail, run, settings_or_exit
from fraudflow.db.target import resolve_database_url

app = typer.Typer(help="The online feature store (FRAUDFLOW_REDIS_URL).", no_args_is_help=True)


@app.command("rebuild")
def rebuild() -> None:
    """Replay the last 7 days of stored transactions (fraud_predictions) into the feature store: after losing
    it, or to fill a new one. Safe on a live store: events it already holds are not counted twice."""
    # A command can wait for the store longer than a request can.
    settings = settings_or_exit(FRAUDFLOW_FEATURES_BUDGET_MS=5000)
    store = feature_store(settings)
    if store is None:
        fail("set FRAUDFLOW_REDIS_URL to the store to rebuild", code=2)

    async def main() -> int:
        conn = await asyncpg.connect(await resolve_database_url(settings))
        try:
            return await replay_into(conn, store, progress=lambda n: typer.echo(f"{n:,} replayed", err=True))
        except RedisError as error:
            raise CommandError(f"the feature store did not answer: {error}") from None
        finally:
            await conn.close()
            await store.aclose()

    count = run(main)
    typer.echo(f"feature store rebuilt from {count:,} stored transactions")
