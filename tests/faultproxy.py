"""A fault-injecting HTTP proxy in front of a Kinesis emulator (neither emulator throttles or fails).

Faults are set per Kinesis operation (the X-Amz-Target action) and consumed as calls arrive:
- `fail_records(n)`: in the next PutRecords calls, fail up to n records with
  ProvisionedThroughputExceededException; those records are not forwarded, as with real Kinesis.
- `error(action, status, code, times)`: answer the next `times` calls of `action` with an error (errors
  set for one action queue up in order).
- `delay(action, seconds, times)`: hold the next calls before forwarding (timeouts).
- `down = True`: answer every call with 503 until set back.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web


@dataclass
class _Error:
    status: int
    code: str
    times: int


@dataclass
class FaultProxy:
    upstream: str
    records_to_fail: int = 0
    down: bool = False
    errors: dict[str, list[_Error]] = field(default_factory=dict)
    delays: dict[str, tuple[float, int]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    injected: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_records(self, count: int) -> None:
        self.records_to_fail = count

    def error(self, action: str, status: int, code: str, times: int = 1) -> None:
        self.errors.setdefault(action, []).append(_Error(status, code, times))

    def delay(self, action: str, seconds: float, times: int = 1) -> None:
        self.delays[action] = (seconds, times)

    async def start(self) -> None:
        self._session = ClientSession()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as response:
            content = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() in {"content-type", "x-amzn-requestid"}}
            return response.status, content, kept

    @staticmethod
    def _error_response(status: int, code: str) -> web.Response:
        return web.Response(
            status=status,
            content_type="application/x-amz-json-1.1",
            body=json.dumps({"__type": code, "message": "injected by FaultProxy"}).encode(),
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.calls[action] = self.calls.get(action, 0) + 1
        body = await request.read()
        if self.down:
            self.injected += 1
            return self._error_response(503, "ServiceUnavailable")
        queued = self.errors.get(action)
        if queued:
            error = queued[0]
            error.times -= 1
            if error.times <= 0:
                queued.pop(0)
            self.injected += 1
            return self._error_response(error.status, error.code)
        if (delay := self.delays.get(action)) and delay[1] > 0:
            self.delays[action] = (delay[0], delay[1] - 1)
            await asyncio.sleep(delay[0])
        if action == "PutRecords" and self.records_to_fail > 0:
            return await self._partial_put(request, body)
        status, content, headers = await self._forward(request, body)
        return web.Response(status=status, body=content, headers=headers)

    async def _partial_put(self, request: web.Request, body: bytes) -> web.Response:
        payload = json.loads(body)
        records: list[dict[str, Any]] = payload["Records"]
        # Fail every other record, so failures interleave with successes in one call.
        failing = [i for i in range(len(records)) if i % 2 == 0][: self.records_to_fail]
        self.records_to_fail -= len(failing)
        self.injected += len(failing)
        forwarded = [r for i, r in enumerate(records) if i not in set(failing)]
        results: list[dict[str, Any]] = []
        if forwarded:
            status, content, _ = await self._forward(request, json.dumps({**payload, "Records": forwarded}).encode())
            if status != 200:
                return web.Response(status=status, body=content)
            results = json.loads(content)["Records"]
        merged, upstream = [], iter(results)
        for i in range(len(records)):
            merged.append(
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"}
                if i in set(failing)
                else next(upstream)
            )
        out = {"FailedRecordCount": len(failing), "Records": merged}
        return web.Response(status=200, content_type="application/x-amz-json-1.1", body=json.dumps(out).encode())
