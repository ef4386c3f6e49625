"""Access control for the dashboard: HTTP basic auth from settings; without users, direct loopback clients only."""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Flask, Response, request

from fraudflow.config import Settings
from fraudflow.net import is_loopback

HEALTH_PATH = "/healthz"
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host")


def _authorized(header: str | None, users: dict[str, str]) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = users.get(user, "")
    # compare_digest on both paths, so an unknown user costs the same time as a wrong password
    return hmac.compare_digest(password.encode(), expected.encode()) and bool(expected)


def protect(server: Flask, settings: Settings) -> None:
    users = settings.dashboard_credentials

    @server.before_request
    def check() -> Response | None:
        if request.path == HEALTH_PATH:  # load balancer and container health checks carry no credentials
            return None
        if users:
            if _authorized(request.headers.get("Authorization"), users):
                return None
            return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="fraudflow"'})
        # A reverse proxy on this host connects from loopback for every client: a forwarded request is not local.
        if not is_loopback(request.remote_addr) or any(h in request.headers for h in PROXY_HEADERS):
            return Response("no dashboard users configured: direct loopback clients only", 403)
        return None
