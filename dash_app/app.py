"""The dashboard app factory; `dash_app.wsgi:server` serves it under any WSGI server."""

from __future__ import annotations

from dash import Dash

from dash_app.auth import HEALTH_PATH, protect
from dash_app.callbacks import register
from dash_app.database import Database
from dash_app.layout import layout
from fraudflow.config import Settings, SettingsError
from fraudflow.db.target import DatabaseTarget


def check_security(settings: Settings) -> None:
    if settings.production and not settings.dashboard_credentials:
        raise SettingsError("missing setting FRAUDFLOW_DASHBOARD_USERS: required when FRAUDFLOW_ENV=production")


def create_app(settings: Settings, database: DatabaseTarget | str) -> Dash:
    check_security(settings)
    app = Dash(__name__, title="fraudflow", update_title="", serve_locally=True, compress=True)
    app.layout = layout(settings.dashboard_refresh_s)
    register(app, Database(database, max_size=settings.db_pool_max))
    protect(app.server, settings)
    # Liveness only: it says nothing about the database, so a PostgreSQL failover does not restart every task.
    app.server.add_url_rule(HEALTH_PATH, "healthz", lambda: "ok")
    return app
