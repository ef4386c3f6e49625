"""Dependencies injected into routes: the app's services and the API-key check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import Request

from api.metrics import ApiMetrics
from api.policy import PolicyWatcher
from api.readiness import Readiness
from api.responses import JSONResponse, problem
from api.security import authorize_admin
from api.service import ScoringService
from fraudflow.config import Settings
from fraudflow.decisions.conditions import ConditionError
from fraudflow.decisions.store import NameTaken, PolicyError, UnknownName
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


async def answer(services: Services, work: Callable[[asyncpg.Connection], Awaitable[Any]], status: int = 200) -> Any:
    """Run `work(conn)` for an admin route; a refused change answers 4xx naming the problem (a condition:
    the field `when`), an unreachable database 503."""
    try:
        async with database(services) as conn:
            return JSONResponse(await work(conn), status_code=status)
    except ConditionError as error:
        return problem(422, [{"loc": ["body", "when"], "msg": str(error), "type": "condition"}])
    except UnknownName as error:
        return problem(404, str(error))
    except NameTaken as error:
        return problem(409, str(error))
    except PolicyError as error:
        return problem(422, str(error))
    except (OSError, asyncpg.PostgresError) as error:
        return problem(503, f"the database is unreachable: {type(error).__name__}")


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
