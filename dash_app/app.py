"""The dashboard app factory; `dash_app.wsgi:server` serves it under any WSGI server."""

from __future__ import annotations

from dash import Dash

from dash_app import decisions, models_page, review
from dash_app.auth import HEALTH_PATH, protect
from dash_app.callbacks import register
from dash_app.database import Database
from dash_app.figures import TOPOJSON, ServedModel, graph_config
from dash_app.layout import layout
from fraudflow.config import Settings, SettingsError
from fraudflow.db.target import DatabaseTarget
from fraudflow.manifest import Manifest
from fraudflow.registry import default_models_root, resolve


def check_security(settings: Settings) -> None:
    if settings.production and not settings.dashboard_credentials:
        raise SettingsError("missing setting FRAUDFLOW_DASHBOARD_USERS: required when FRAUDFLOW_ENV=production")


def served_model(settings: Settings) -> ServedModel | None:
    """What the model card of the served set says, for the charts; None without a readable manifest (the
    dashboard does not need the models to run)."""
    try:
        manifest = Manifest.read(resolve(settings.models_dir or default_models_root()))
    except (OSError, ValueError):
        return None
    metrics = manifest.metrics
    if manifest.policy is not None:  # decided by expected cost: no single cut on p(fraud) to draw
        card = metrics.get("policy", {}).get("test", {}).get("cost_policy", {})
        per_1000 = {k: card[k]["value"] / 1000 for k in ("reviews_per_1000", "declines_per_1000") if k in card}
        expected = {}
        if len(per_1000) == 2:
            expected = {"flagged": sum(per_1000.values()), "declined": per_1000["declines_per_1000"]}
        return ServedModel(manifest.version, {}, expected)
    rows = metrics.get("test_rows") or 0
    expected = {
        # The card counts transactions at or above each cut on its test split: flagged, then declined.
        "flagged": metrics.get("at_review", {}).get("flagged", 0) / rows if rows else None,
        "declined": metrics.get("at_decline", {}).get("flagged", 0) / rows if rows else None,
    }
    return ServedModel(
        manifest.version,
        {"review": manifest.thresholds.review, "decline": manifest.thresholds.decline},
        {name: share for name, share in expected.items() if share is not None},
    )


def create_app(settings: Settings, database: DatabaseTarget | str) -> Dash:
    check_security(settings)
    app = Dash(__name__, title="fraudflow", update_title="", serve_locally=True, compress=True)
    app.layout = layout(settings.dashboard_refresh_s, app.get_asset_url(TOPOJSON))
    db = Database(database, max_size=settings.db_pool_max)
    register(app, db, served_model(settings))
    decisions.register(app, db)
    models_page.register(app, db)
    review.register(app, db, graph_config(app.get_asset_url(TOPOJSON)))
    protect(app.server, settings)
    # Liveness only: it says nothing about the database, so a PostgreSQL failover does not restart every task.
    app.server.add_url_rule(HEALTH_PATH, "healthz", lambda: "ok")
    return app
