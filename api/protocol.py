"""The HTTP protocol the API is served with (`uvicorn --http api.protocol:BoundedHttpTools`): uvicorn's
httptools protocol with the two bounds it lacks.

- Pipelining: uvicorn parses every request a client pipelines, queues them all, and reads more after each
  answer; a client that pipelines without reading its answers grows the process without limit (measured:
  136 to 929 MB in 10 s from two connections). Here reading pauses while `MAX_PIPELINED` requests wait.
- Slow and idle clients: uvicorn's only timer is the keep-alive one, armed after an answer, so a connection
  that never sends a byte, or sends a request slowly (slowloris), is held for ever. Here a connection must
  deliver a whole request within the app's `http_request_timeout_s` of connecting, of its previous answer, or
  of starting the request; otherwise it is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_PIPELINED = 8
DEFAULT_REQUEST_TIMEOUT_S = 15.0
STATE_KEY = "http_request_timeout_s"  # the app's lifespan state carries the setting


class BoundedHttpTools(HttpToolsProtocol):
    _request_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._request_timer is None:
            timeout = float(self.app_state.get(STATE_KEY, DEFAULT_REQUEST_TIMEOUT_S))
            self._request_timer = self.loop.call_later(timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _too_slow(self) -> None:
        # Armed only while a request is awaited or arriving: an answer in progress is the app's business.
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._bound_pipeline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # resumes reading, whatever is queued
        self._bound_pipeline()

    def _bound_pipeline(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED and not self.transport.is_closing():
            self.flow.pause_reading()
