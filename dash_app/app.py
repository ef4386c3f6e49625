"""The dashboard app factory; `dash_app.wsgi:server` serves it under any WSGI server."""

from __future__ import annotations

from dash import Dash

from dash_app.auth import HEALTH_PATH, protect
from dash_app.callbacks import register
from dash_app.database import Database
from dash_app.layout import layout
from fraudflow.config import Settings, SettingsError
from fraudflow.db.target import DatabaseTarget
from fraudflow.manifest import Manifest, default_models_dir


def check_security(settings: Settings) -> None:
    if settings.production and not settings.dashboard_credentials:
        raise SettingsError("missing setting FRAUDFLOW_DASHBOARD_USERS: required when FRAUDFLOW_ENV=production")


def decision_cuts(settings: Settings) -> dict[str, float] | None:
    """The served model set's decision thresholds on p(fraud), for the histogram; None without a readable
    manifest (the dashboard does not need the models to run)."""
    try:
        thresholds = Manifest.read(settings.models_dir or default_models_dir()).thresholds
    except (OSError, ValueError):
        return None
    return {"review": thresholds.review, "decline": thresholds.decline}


def create_app(settings: Settings, database: DatabaseTarget | str) -> Dash:
    check_security(settings)
    app = Dash(__name__, title="fraudflow", update_title="", serve_locally=True, compress=True)
    app.layout = layout(settings.dashboard_refresh_s)
    register(app, Database(database, max_size=settings.db_pool_max), decision_cuts(settings))
    protect(app.server, settings)
    # Liveness only: it says nothing about the database, so a PostgreSQL failover does not restart every task.
    app.server.add_url_rule(HEALTH_PATH, "healthz", lambda: "ok")
    return app
