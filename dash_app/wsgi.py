"""WSGI entry point for serving the dashboard under a WSGI server of your choice (`dash_app.wsgi:server`)."""

from __future__ import annotations

import asyncio
import sys

from dash_app.app import create_app
from fraudflow.config import SettingsError, load_settings
from fraudflow.db.target import resolve_database
from fraudflow.logging import configure_logging

try:
    _settings = load_settings()
    configure_logging(_settings)
    server = create_app(_settings, asyncio.run(resolve_database(_settings))).server
except SettingsError as error:
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
