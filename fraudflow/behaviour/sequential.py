"""A user's features replayed one transaction at a time, as the store computes them: for the users whose
history the column replay (`offline.py`) cannot take (tied times, whose order is the members', or more
transactions than a history keeps).

The same rules as the online store's Lua script (`online.py`), step for step and in the same floating-point
order (tests/test_behaviour.py).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from fraudflow.behaviour.definitions import (
    MIN_TRAVEL_S,
    USER_HISTORY_MAX,
    USER_HISTORY_S,
    WINDOWS,
    Activity,
    haversine_km,
)

MISSING = math.nan


# A history member's fields, parsed once: amount, latitude and longitude (None: not located), device, IP and
# country digests ("" when unknown).
Parsed = tuple[float, float | None, float | None, str, str, str]


def parse(member: str) -> Parsed:
    _, amount, lat, lon, device, ip, country = member.split("|")
    return float(amount), float(lat) if lat else None, float(lon) if lon else None, device, ip, country


class _History:
    """A user's transactions as the store's sorted set keeps them: ordered by (time, member), trimmed to
    7 days and capped, each member parsed once."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, Parsed]] = []
        self.members: set[str] = set()

    def add(self, t: float, member: str) -> None:
        if member in self.members:  # the same event again: the store's ZADD changes nothing either
            return
        self.members.add(member)
        bisect.insort(self.entries, (t, member, parse(member)))
        # As the script trims (by rank, the oldest first): what is 7 days old or more, then beyond the cap.
        cut = bisect.bisect_right(self.entries, (t - USER_HISTORY_S, "\U0010ffff"))
        cut = max(cut, len(self.entries) - USER_HISTORY_MAX)
        if cut > 0:
            for _, gone, _ in self.entries[:cut]:
                self.members.discard(gone)
            del self.entries[:cut]


def user_features(entries: Iterable[tuple[float, str, Parsed]], current: str, t: float) -> list[float]:
    """The user's features from their history in (t - 7 d, t] in (score, member) order, current included."""
    lows = [t - w for w in WINDOWS.values()]
    low_1h, low_24h, low_7d = lows
    c1 = c24 = c7 = 0.0
    s1 = s24 = s7 = 0.0
    devices_24h: set[str] = set()
    devices_7d: set[str] = set()
    ips_24h: set[str] = set()
    countries: set[str] = set()
    previous: list[float] = []
    previous_sum = 0.0
    last_previous: float | None = None
    last_place: tuple[float, float, float] | None = None
    amount, lat, lon, device, ip, country = parse(current)
    seen_device = seen_country = False
    for score, member, (value, e_lat, e_lon, e_device, e_ip, e_country) in entries:
        # Each window's sum accumulates in entry order, as the Lua script's does (unrolled: the hot loop).
        if score > low_1h:
            c1 += 1
            s1 += value
        if score > low_24h:
            c24 += 1
            s24 += value
        if score > low_7d:
            c7 += 1
            s7 += value
        if e_device:
            devices_7d.add(e_device)
            if score > low_24h:
                devices_24h.add(e_device)
        if e_ip and score > low_24h:
            ips_24h.add(e_ip)
        if e_country:
            countries.add(e_country)
        if member != current:
            previous.append(value)
            previous_sum += value
            last_previous = score
            if e_lat is not None and e_lon is not None:
                last_place = (e_lat, e_lon, score)
            seen_device = seen_device or (bool(device) and e_device == device)
            seen_country = seen_country or (bool(country) and e_country == country)
    out = [c1, c24, c7, s1, s24, s7]
    out.append(MISSING if last_previous is None else t - last_previous)
    ratio = zscore = MISSING
    if previous:
        mean = previous_sum / len(previous)
        if mean > 0:
            ratio = amount / mean
        if len(previous) >= 2:
            squares = 0.0
            for value in previous:
                squares += (value - mean) * (value - mean)
            std = math.sqrt(squares / (len(previous) - 1))
            if std > 0:
                zscore = (amount - mean) / std
    out += [ratio, zscore]
    out += [float(len(devices_24h)), float(len(devices_7d))] if device else [MISSING, MISSING]
    out.append(float(len(ips_24h)) if ip else MISSING)
    out.append(float(len(countries)) if country else MISSING)
    out.append((0.0 if seen_device else 1.0) if device else MISSING)
    out.append((0.0 if seen_country else 1.0) if country else MISSING)
    km = speed = MISSING
    if lat is not None and lon is not None and last_place is not None:
        km = haversine_km(last_place[0], last_place[1], lat, lon)
        speed = km / (max(t - last_place[2], MIN_TRAVEL_S) / 3600.0)
    out += [km, speed]
    return out


class UserHistories:
    """Each user's history as the store keeps it, for a replay in event-time order."""

    def __init__(self) -> None:
        self.users: dict[str, _History] = {}

    def observe(self, activity: Activity) -> list[float]:
        """Add one transaction to its user's history and return its user features."""
        t, member = activity.time_s, activity.member()
        history = self.users.get(activity.user_id)
        if history is None:
            history = self.users[activity.user_id] = _History()
        history.add(t, member)
        # In time order nothing later than t is stored yet: the whole history is (t - 7 d, t].
        return user_features(history.entries, member, t)
