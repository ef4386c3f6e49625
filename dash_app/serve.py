"""The dashboard under gunicorn, a production WSGI server: worker processes with threads, graceful stops,
keep-alive longer than a load balancer's idle timeout. `fraudflow dashboard` runs it."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from dash_app.app import create_app
from fraudflow.config import Settings
from fraudflow.db.target import DatabaseTarget

# Above an ALB's 60 s idle timeout: the load balancer must never reuse a connection the server has closed.
KEEP_ALIVE_S = 75


class _Dashboard(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(self, settings: Settings, database: DatabaseTarget, options: dict[str, Any]) -> None:
        self.settings = settings
        self.database = database
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # In each worker, after the fork: the app's database loop and pool are the worker's own.
        app = create_app(self.settings, self.database)
        # Dash registers the component scripts a page may fetch while it renders the page, per process: render
        # it once here, or a worker that did not serve the page answers its script requests with 500.
        with app.server.test_request_context("/"):
            app._setup_server()  # type: ignore[no-untyped-call]
            app.index()  # type: ignore[no-untyped-call]
        return app.server


def serve(settings: Settings, database: DatabaseTarget, host: str, port: int, workers: int, threads: int) -> None:
    """Serve until SIGTERM (graceful) or Ctrl-C."""
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": KEEP_ALIVE_S,
        "graceful_timeout": 20,
        "timeout": 60,
        "preload_app": False,
        "proc_name": "fraudflow-dashboard",
        "control_socket_disable": True,  # it would be written to $HOME, read-only in the image
    }
    _Dashboard(settings, database, options).run()
