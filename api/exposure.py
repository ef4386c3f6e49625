"""Which operator paths answer without a key (FRAUDFLOW_API_OPEN_PATHS): /readyz, /metrics and the API docs
are open by default, for load balancers, Prometheus and developers; a deployment that keeps them private
lists fewer. /healthz is always open (liveness probes carry no key)."""

from __future__ import annotations

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.responses import problem
from api.security import authorize_operator
from fraudflow.config import Settings

PATHS = {  # by group of fraudflow.config.OPEN_PATH_GROUPS
    "readyz": ("/readyz",),
    "metrics": ("/metrics",),
    "docs": ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"),
}


class GuardOperatorPaths:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        open_groups = settings.open_path_groups
        self.guarded = frozenset(path for group, paths in PATHS.items() if group not in open_groups for path in paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.guarded:
            try:
                authorize_operator(Request(scope), self.settings)
            except HTTPException as error:
                await problem(error.status_code, error.detail, headers=dict(error.headers or {}))(scope, receive, send)
                return
        await self.app(scope, receive, send)
