"""Kinesis-compatible servers on loopback: moto's server mode (default) and kinesis-local (npm).

moto is pure Python and always available with the `local` extra. kinesis-local is LocalStack's Kinesis
engine and behaves closer to the real service around closed shards (ChildShards, no NextShardIterator)
and iterator expiry, so the consumer's shard-end tests run on it too.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Protocol

from fraudflow.local.process import ChildServer, ServiceError, wait_for_port
from fraudflow.net import free_port, port_is_free


class KinesisServer(Protocol):
    name: str
    endpoint_url: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _check_port(port: int, host: str) -> int:
    if port == 0:
        return free_port(host)
    if not port_is_free(port, host):
        raise ServiceError(f"port {port} on {host} is taken; choose another Kinesis port")
    return port


class MotoKinesis:
    name = "moto"

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", log_dir: Path | None = None) -> None:
        self.host = host
        self.port = _check_port(port, host)
        self.endpoint_url = f"http://{host}:{self.port}"
        self._server = ChildServer(
            "moto",
            [sys.executable, "-m", "fraudflow.local.moto_server", host, str(self.port)],
            log_path=log_dir / "moto.log" if log_dir else None,
        )

    def start(self) -> None:
        try:
            import moto  # noqa: F401
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ServiceError("embedded Kinesis needs the `local` extra: pip install 'fraudflow[local]'") from error
        self._server.start()
        try:
            wait_for_port(self.host, self.port, 30.0, self._server.process)
        except ServiceError as error:
            self._server.stop()
            raise ServiceError(f"moto server: {error}\n{self._server.tail_log()}") from None

    def stop(self) -> None:
        self._server.stop()


def find_kinesis_local() -> Path | None:
    """The kinesis-local package folder: $FRAUDFLOW_KINESIS_LOCAL_DIR, else node_modules above here or cwd."""
    if configured := os.environ.get("FRAUDFLOW_KINESIS_LOCAL_DIR"):
        return Path(configured) if (Path(configured) / "main.js").exists() else None
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "node_modules" / "kinesis-local"
            if (candidate / "main.js").exists():
                return candidate
    return None


def kinesis_local_missing_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (kinesis-local runs on Node.js)"
    if find_kinesis_local() is None:
        return "kinesis-local is not installed: run `npm ci` in the project root"
    return None


class KinesisLocal:
    name = "kinesis-local"

    def __init__(
        self, *, port: int = 0, host: str = "127.0.0.1", log_dir: Path | None = None, shard_op_ms: int = 100
    ) -> None:
        reason = kinesis_local_missing_reason()
        if reason:
            raise ServiceError(reason)
        package = find_kinesis_local()
        assert package is not None
        self.host = host
        self.port = _check_port(port, host)
        self.endpoint_url = f"http://{host}:{self.port}"
        duration = f"{shard_op_ms}ms"
        self._server = ChildServer(
            "kinesis-local",
            ["node", "main.js"],
            cwd=package,  # main.js reads server.json (its TLS certificate) from its own folder
            env={
                "KINESIS_MOCK_PLAIN_PORT": str(self.port),
                "KINESIS_MOCK_TLS_PORT": str(free_port(host)),
                "LOG_LEVEL": "WARN",
                "CREATE_STREAM_DURATION": duration,
                "DELETE_STREAM_DURATION": duration,
                "SPLIT_SHARD_DURATION": duration,
                "MERGE_SHARDS_DURATION": duration,
                "UPDATE_SHARD_COUNT_DURATION": duration,
                "SHARD_LIMIT": "200",
            },
            log_path=log_dir / "kinesis-local.log" if log_dir else None,
        )

    def start(self) -> None:
        self._server.start()
        try:
            wait_for_port(self.host, self.port, 60.0, self._server.process)
        except ServiceError as error:
            self._server.stop()
            raise ServiceError(f"kinesis-local: {error}\n{self._server.tail_log()}") from None

    def stop(self) -> None:
        self._server.stop()
