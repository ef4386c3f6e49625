"""Dependencies injected into routes: the app's services and the API-key check."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from api.metrics import ApiMetrics
from api.policy import PolicyWatcher
from api.readiness import Readiness
from api.security import authorize_admin
from api.service import ScoringService
from fraudflow.config import Settings
from fraudflow.scoring import Scorer


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
