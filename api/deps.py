"""Dependencies injected into routes: the app's services and the API-key check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from api.metrics import ApiMetrics
from api.policy import PolicyWatcher
from api.readiness import Readiness
from api.security import authorize_admin
from api.service import ScoringService
from fraudflow.config import Settings
from fraudflow.decisions.store import PolicyError
from fraudflow.scoring import Scorer


@asynccontextmanager
async def database(services: Services) -> AsyncIterator[asyncpg.Connection]:
    """A connection for an admin route (rare: no pool kept); PolicyError without a database."""
    if services.policy.target is None:
        raise PolicyError("no database is configured (DATABASE_URL)")
    conn = await asyncpg.connect(**services.policy.target.connect_kwargs(), timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Services:
    settings: Settings
    metrics: ApiMetrics
    scorer: Scorer
    scoring: ScoringService
    readiness: Readiness
    policy: PolicyWatcher


def _services(request: Request) -> Services:
    value: Services = request.app.state.services
    return value


async def services(request: Request) -> Services:
    return _services(request)


# Dependencies are async on purpose: FastAPI runs plain `def` dependencies in a thread pool, which would
# cost a thread hop per request.
async def admin_authorized(request: Request) -> None:
    authorize_admin(request, _services(request).settings)
