"""Allow, deny and named lists of users, devices, IP addresses (single or CIDR ranges) and countries, indexed
in-process: a lookup costs the same for ten entries or ten million."""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from fraudflow.events import country_code

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class EntityKind(enum.StrEnum):
    USER = "user"
    DEVICE = "device"
    IP = "ip"
    COUNTRY = "country"


class ListAction(enum.StrEnum):
    ALLOW = "allow"  # approve, before anything else
    DENY = "deny"  # decline, after allow lists
    NONE = "none"  # only for rules to read (`"name" in lists`)


class ListError(ValueError):
    """A list or an entry that cannot be stored; the message names the problem."""


@dataclass(frozen=True)
class ListInfo:
    name: str
    kind: EntityKind
    action: ListAction
    description: str = ""


class Entry(NamedTuple):
    """A tuple of plain values: with millions of them, the garbage collector stops tracking them."""

    value: str
    reason: str | None = None
    author: str = ""
    expires_at: float | None = None  # epoch seconds; None: never

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ListError(f"list name {name!r}: lower-case letters, digits and _, starting with a letter (<= 63)")
    return name


def normalise(kind: EntityKind, value: str) -> str:
    """An entry as stored and compared: countries upper case, networks and addresses in canonical form."""
    value = value.strip()
    if not value:
        raise ListError(f"an empty {kind.value} cannot be listed")
    if kind is EntityKind.COUNTRY:
        return country_code(value) or ""
    if kind is EntityKind.IP:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ListError(f"{value!r} is not an IP address or a CIDR range (e.g. 203.0.113.0/24)") from None
        if network.num_addresses == 1:
            return str(network.network_address)
        return str(network)
    if len(value) > 128:
        raise ListError(f"a {kind.value} id is at most 128 characters")
    return value


@dataclass
class _Networks:
    """CIDR ranges by prefix length: a lookup tries each length present (at most 33 or 129), never each range."""

    by_length: dict[int, dict[int, Entry]] = field(default_factory=dict)
    _lengths: list[int] = field(default_factory=list)

    def put(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, entry: Entry | None) -> None:
        key = int(network.network_address) >> (network.max_prefixlen - network.prefixlen)
        if entry is not None:
            self.by_length.setdefault(network.prefixlen, {})[key] = entry
        elif (ranges := self.by_length.get(network.prefixlen)) is not None:
            ranges.pop(key, None)
            if not ranges:
                del self.by_length[network.prefixlen]

    def find(self, address: int, bits: int) -> Entry | None:
        for length in self._lengths:
            if (entry := self.by_length[length].get(address >> (bits - length))) is not None:
                return entry
        return None

    def freeze(self) -> None:
        self._lengths = sorted(self.by_length, reverse=True)  # the most specific range answers


class ListIndex:
    """One list's live entries."""

    def __init__(self, info: ListInfo, entries: Iterable[Entry] = ()) -> None:
        self.info = info
        self.exact: dict[str, Entry] = {}
        self._v4, self._v6 = _Networks(), _Networks()
        for entry in entries:
            self._put(entry.value, entry)
        self._freeze()

    def _put(self, value: str, entry: Entry | None) -> None:
        if self.info.kind is EntityKind.IP and "/" in value:
            network = ipaddress.ip_network(value, strict=False)
            (self._v4 if network.version == 4 else self._v6).put(network, entry)
        elif entry is not None:
            self.exact[value] = entry
        else:
            self.exact.pop(value, None)

    def _freeze(self) -> None:
        self._v4.freeze()
        self._v6.freeze()
        self.ranges = bool(self._v4.by_length or self._v6.by_length)

    def replace(self, value: str, entry: Entry | None) -> None:
        """One entry changed (None: removed), in place: a lookup sees the list before or after, never half."""
        self._put(value, entry)
        self._freeze()

    def __len__(self) -> int:
        return len(self.exact) + sum(len(n) for s in (self._v4, self._v6) for n in s.by_length.values())

    def find(self, value: str, now: float) -> Entry | None:
        entry = self.exact.get(value)
        if entry is None and self.ranges:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                return None
            networks, bits = (self._v4, 32) if address.version == 4 else (self._v6, 128)
            entry = networks.find(int(address), bits)
        return entry if entry is not None and entry.live(now) else None
