"""Keeps this process's rules and lists current: loaded from PostgreSQL at start, then changed on each
NOTIFY (fraudflow.decisions.store), applied when the change commits. Without the database the last policy
loaded keeps applying, and /readyz and the metrics say so; on reconnection everything is loaded again (a
change made meanwhile was not heard)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from api.background import in_background
from api.metrics import ApiMetrics
from fraudflow.db.target import DatabaseTarget
from fraudflow.decisions import store
from fraudflow.decisions.policy import Policy, Rule
from fraudflow.logging import get_logger

log = get_logger(__name__)

PING_S = 5.0  # how often a quiet connection is checked (a partition closes no socket)
MAX_BACKOFF_S = 5.0


class PolicyWatcher:
    def __init__(self, target: DatabaseTarget | None, metrics: ApiMetrics) -> None:
        self.target = target
        self.metrics = metrics
        self.policy = Policy()
        self.problem: str | None = None if target is None else "rules and lists not loaded yet"
        self.confirmed_at = time.monotonic()
        metrics.policy_age.set_function(lambda: time.monotonic() - self.confirmed_at)

    def status(self) -> dict[str, Any]:
        return {
            "rules": len(self.policy.rules),
            "lists": len(self.policy.lists),
            "current": self.problem is None,
            "problem": self.problem,
        }

    async def _load_all(self, conn: asyncpg.Connection) -> None:
        self._install(Policy(await store.load_lists(conn), await self._rules(conn)))

    async def _rules(self, conn: asyncpg.Connection) -> list[Rule]:
        rules, broken = await store.load_rules(conn)
        for problem in broken:
            log.error("rule left out", problem=problem)
        return rules

    def _install(self, policy: Policy) -> None:
        self.policy = policy  # one reference assignment: a transaction sees the old policy or the new one
        self.metrics.policy_rules.set(len(policy.rules))
        # Lists of millions of entries live until the next change: out of the collector's reach, or each
        # full collection walks them again (as the app does with what it loads at start-up).
        gc.freeze()

    async def _apply(self, conn: asyncpg.Connection, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        current = self.policy
        if kind == "rules":
            self._install(Policy(current.lists.values(), await self._rules(conn)))
        elif kind == "list":
            lists = {**current.lists}
            index = await store.load_list(conn, rest)
            if index is None:
                lists.pop(rest, None)
            else:
                lists[rest] = index
            # Rules naming a list are checked against the lists that exist: reload them with the lists.
            self._install(Policy(lists.values(), await self._rules(conn)))
        elif kind == "entry":
            name, _, value = rest.partition(":")
            index = current.lists.get(name)
            if index is None:
                await self._apply(conn, f"list:{name}")
            else:
                index.replace(value, await store.load_entry(conn, name, value))
        log.info("policy changed", change=payload, rules=len(self.policy.rules), lists=len(self.policy.lists))

    async def _session(self, conn: asyncpg.Connection) -> None:
        changes: asyncio.Queue[str] = asyncio.Queue()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(store.CHANNEL, lambda _c, _pid, _channel, payload: changes.put_nowait(payload))
        await self._load_all(conn)  # after LISTEN: a change committed meanwhile is heard, never missed
        self._healthy()
        log.info("policy loaded", rules=len(self.policy.rules), lists=len(self.policy.lists))
        while not lost.is_set():
            try:
                payload = await asyncio.wait_for(changes.get(), PING_S)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=PING_S)
                self._healthy()
                continue
            await self._apply(conn, payload)
            self._healthy()
        raise ConnectionError("the connection to PostgreSQL closed")

    def _healthy(self) -> None:
        self.problem = None
        self.confirmed_at = time.monotonic()
        self.metrics.policy_stale.set(0)

    async def _run(self) -> None:
        assert self.target is not None
        backoff = 0.25
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(**self.target.connect_kwargs(), timeout=PING_S)
                backoff = 0.25
                await self._session(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, ConnectionError) as error:
                since = time.strftime("%H:%M:%S", time.gmtime(time.time() - (time.monotonic() - self.confirmed_at)))
                self.problem = (
                    f"rules and lists cannot be refreshed ({type(error).__name__}): applying those current at "
                    f"{since} UTC ({len(self.policy.rules)} rules, {len(self.policy.lists)} lists)"
                )
                self.metrics.policy_stale.set(1)
                log.warning("policy store unreachable", error=str(error) or type(error).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[PolicyWatcher]:
        if self.target is None:
            yield self
            return
        async with in_background(self._run(), "policy-watcher"):
            yield self
