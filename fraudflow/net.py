"""Network helpers: the one loopback check and the port helpers every entry point and service uses."""

from __future__ import annotations

import functools
import socket
from ipaddress import ip_address


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (services without credentials serve only these)."""
    if host is None:
        return False
    try:
        return ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return host == "localhost"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
