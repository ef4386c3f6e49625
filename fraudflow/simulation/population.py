"""Who pays where: a pool of users with homes, usual devices and addresses, and what frauds look like.

Better than the reference client (one of four cities and a random 192.168 address per request): each user
has a home city and its coordinates, one or two usual devices and a usual address; a fraud more often comes
from a new device, another country and the small hours.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CITIES = [
    ("FR", "IDF", "Paris", 48.86, 2.35),
    ("FR", "ARA", "Lyon", 45.76, 4.84),
    ("DE", "BE", "Berlin", 52.52, 13.40),
    ("DE", "BY", "Munich", 48.14, 11.58),
    ("GB", "ENG", "London", 51.51, -0.13),
    ("ES", "MD", "Madrid", 40.42, -3.70),
    ("IT", "LAZ", "Rome", 41.90, 12.50),
    ("NL", "NH", "Amsterdam", 52.37, 4.90),
    ("US", "NY", "New York", 40.71, -74.01),
    ("US", "CA", "San Francisco", 37.77, -122.42),
    ("BR", "SP", "Sao Paulo", -23.55, -46.63),
    ("IN", "MH", "Mumbai", 19.08, 72.88),
    ("JP", "13", "Tokyo", 35.68, 139.69),
    ("NG", "LA", "Lagos", 6.52, 3.38),
]
DEVICES = [
    ("mobile", "iOS 17", "2.4.1"),
    ("mobile", "Android 14", "2.4.0"),
    ("desktop", "Windows 11", "web"),
    ("desktop", "macOS 14", "web"),
    ("tablet", "iPadOS 17", "2.3.9"),
]
SOURCES = ["checkout", "mobile_app", "pos", "subscription"]


@dataclass(frozen=True)
class User:
    user_id: str
    city: tuple[str, str, str, float, float]
    devices: tuple[tuple[str, str, str], ...]
    ip: str
    source: str


def _ip(rng: random.Random) -> str:
    # Documentation ranges (TEST-NET) only: never a real person's address.
    network = rng.choice(["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"])
    hosts = list(ipaddress.ip_network(network).hosts())
    return str(rng.choice(hosts))


def users(count: int, rng: random.Random) -> list[User]:
    return [
        User(
            f"user_{i:05d}",
            rng.choice(CITIES),
            tuple(rng.sample(DEVICES, rng.choice((1, 1, 2)))),
            _ip(rng),
            rng.choice(SOURCES),
        )
        for i in range(count)
    ]


def metadata(user: User, is_fraud: bool, rng: random.Random, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    city, device, ip = user.city, rng.choice(user.devices), user.ip
    if is_fraud:
        if rng.random() < 0.6:
            device = rng.choice(DEVICES)  # a device this user never used
        if rng.random() < 0.5:
            city = rng.choice([c for c in CITIES if c[0] != user.city[0]])  # another country
            ip = _ip(rng)
        if rng.random() < 0.4:
            now = now.replace(hour=rng.randrange(1, 5))  # the small hours
    jitter = rng.uniform(-0.05, 0.05)
    return {
        "timestamp": (now - timedelta(milliseconds=rng.randrange(500))).isoformat(),
        "user_id": user.user_id,
        "source": user.source,
        "device_info": {"device_type": device[0], "os_version": device[1], "app_version": device[2]},
        "ip_address": ip,
        "geo": {
            "country": city[0],
            "region": city[1],
            "city": city[2],
            "latitude": round(city[3] + jitter, 4),
            "longitude": round(city[4] + jitter, 4),
        },
    }
