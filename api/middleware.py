"""One pure-ASGI middleware for every request: request id, body limits, content type, metrics, access log.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request overhead to a few microseconds.
"""

from __future__ import annotations

import logging
import re
import time
from ipaddress import ip_address
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ids import IdSource
from api.metrics import ApiMetrics
from api.responses import problem
from fraudflow.logging import get_logger

log = get_logger("api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_JSON_TYPES = ("application/json", "application/problem+json")


def mask_ip(host: str | None) -> str | None:
    """Drop the last octet (IPv4) or the host part (IPv6): enough to debug, not to identify."""
    if not host:
        return None
    try:
        address = ip_address(host)
    except ValueError:
        return "?"
    if address.version == 4:
        return ".".join([*str(address).split(".")[:3], "0"])
    return str(ip_address(int(address) & ~((1 << 80) - 1))) + "/48"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestContext:
    def __init__(
        self, app: ASGIApp, *, metrics: ApiMetrics, max_body: int, max_batch_body: int, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_batch_body = max_batch_body
        self.access_log = access_log
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._request_ids = IdSource()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else self._request_ids.next()
        id_header = (b"x-request-id", request_id.encode())
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        try:
            early = self._reject_early(scope)
            if early is not None:
                await early(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(scope, receive), send_with_id)
        finally:
            self._observe(scope, state["status"], time.perf_counter() - started, request_id)

    def _limit(self, scope: Scope) -> int:
        return self.max_batch_body if scope["path"] == "/predict/batch" else self.max_body

    def _reject_early(self, scope: Scope) -> Any:
        if scope["method"] != "POST":
            return None
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limit(scope):
            return problem(413, f"request body larger than {self._limit(scope)} bytes")
        content_type = (_header(scope, b"content-type") or "application/json").split(";")[0].strip().lower()
        if content_type not in _JSON_TYPES:
            return problem(415, f"content type {content_type!r} is not supported: send application/json")
        return None

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        limit = self._limit(scope)
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body without Content-Length
                    raise HTTPException(413, f"request body larger than {limit} bytes")
            return message

        return receive_limited

    def _series(self, path: str, method: str, status: int) -> tuple[Any, Any]:
        # labels() hashes and locks on every call; the set of (route, method, status) is small, so keep them.
        key = (path, method, status)
        series = self._children.get(key)
        if series is None:
            series = (
                self.metrics.requests.labels(path, method, str(status)),
                self.metrics.latency.labels(path, str(status)),
            )
            self._children[key] = series
        return series

    def _observe(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # a label per method a client invents
        count, latency = self._series(path, method, status)
        count.inc()
        latency.observe(seconds)
        if self.access_log and path != "/metrics" and log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round(seconds * 1000, 2),
                request_id=request_id,
                client=mask_ip(client[0] if client else None),
            )
