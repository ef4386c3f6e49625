"""A PostgreSQL front that speaks TLS: it answers the client's SSLRequest, terminates TLS with a certificate
of the test's own, and relays the rest to an embedded server (whose build has no TLS), as RDS's TLS looks to
a client. What is under test is the client's verification, not the server's TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

from fraudflow.net import free_port

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class TlsFront:
    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self.upstream_port = upstream_port
        self.context = context
        self.port = 0
        self.sessions = 0  # TLS handshakes completed
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # Two loopback addresses: the certificate names 127.0.0.1, not 127.0.0.2 (a host-name check to fail).
        self.port = free_port()
        self._server = await asyncio.start_server(self._serve, ["127.0.0.1", "127.0.0.2"], self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(8) != _SSL_REQUEST:
                return  # this front serves TLS clients only
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
            self.sessions += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # a refused handshake is the client's verdict, seen on its side
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()
