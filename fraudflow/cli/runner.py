"""What every command shares: settings and logging set up once, known errors as one clear line, signals."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import asyncpg
import typer

from fraudflow.config import Settings, SettingsError, load_settings
from fraudflow.db.target import resolve_database_url
from fraudflow.errors import ExpectedError
from fraudflow.logging import configure_logging

T = TypeVar("T")


class CommandError(ExpectedError):
    """An expected failure with a message for the user (no traceback)."""


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# Failures a command reports in one line: ours, and the network's.
KNOWN_ERRORS = (ExpectedError, ConnectionError, TimeoutError, OSError)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        fail(str(error), code=2)
    configure_logging(settings)
    return settings


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async command; settings and expected failures become a one-line message and a non-zero exit."""
    try:
        return asyncio.run(main())
    except SettingsError as error:
        fail(str(error), code=2)
    except KNOWN_ERRORS as error:
        fail(f"{error}")
    except KeyboardInterrupt:
        sys.exit(130)


def with_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work(conn)` on one connection to the configured database; a schema not migrated yet is a
    one-line message, like every known failure."""
    settings = settings_or_exit()

    async def main() -> T:
        conn = await asyncpg.connect(await resolve_database_url(settings))
        try:
            return await work(conn)
        except asyncpg.UndefinedTableError as error:
            raise CommandError(f"the database lacks a table ({error}): run `fraudflow db migrate`") from None
        finally:
            await conn.close()

    return run(main)


async def wait_for_stop_signal() -> int:
    """Block until SIGINT or SIGTERM; returns the signal number."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def stop(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await received
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def until_signal(work: Awaitable[T]) -> T | None:
    """Run `work` until it finishes or a stop signal arrives (then it is cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(wait_for_stop_signal())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopper.cancel()
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None
