"""`uvicorn api.main:app`: the scoring API with settings from the environment."""

from __future__ import annotations

import sys

from api.app import create_app
from fraudflow.config import SettingsError

try:
    app = create_app()
except SettingsError as error:
    # One clear line instead of uvicorn's import traceback.
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
