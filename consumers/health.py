"""The worker's HTTP port: Prometheus metrics on /metrics, and /healthz, which answers 200 only while the
scheduler's lease loop keeps turning (a process whose loop is stuck, or whose metrics thread alone lives,
is unhealthy and gets replaced)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


def serve_health_and_metrics(
    registry: CollectorRegistry, host: str, port: int, last_round: Callable[[], float], stale_after_s: float
) -> WSGIServer:
    """Serve in a daemon thread; `last_round` is the monotonic time the lease loop last completed a round."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        age = time.monotonic() - last_round()
        healthy = age < stale_after_s
        status = "200 OK" if healthy else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps({"status": "ok" if healthy else "stalled", "last_round_s_ago": round(age, 1)}).encode()]

    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="health-and-metrics", daemon=True).start()
    return server
