"""Network helpers shared by the HTTP entry points."""

from __future__ import annotations

import functools
from ipaddress import ip_address


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (services without credentials serve only these)."""
    if host is None:
        return False
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
