"""Behaviour features over a history, replayed in event-time order: for training and backtests.

The same rules as the online store's Lua script (`online.py`), step for step and in the same floating-point
order, so a transaction gets the same vector whichever path computed it (tests/test_behaviour.py).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudflow.behaviour.definitions import (
    DEVICE_WINDOW_S,
    IP_COUNT_WINDOW_S,
    IP_USERS_WINDOW_S,
    MIN_TRAVEL_S,
    N_STATE,
    USER_HISTORY_MAX,
    USER_HISTORY_S,
    WINDOWS,
    Activity,
    digest,
    haversine_km,
)

MISSING = math.nan


@dataclass
class _Keyed:
    """A sorted set as Redis keeps one: members ordered by (score, member)."""

    entries: list[tuple[float, str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def add(self, score: float, member: str, greater_only: bool = False) -> None:
        old = self.scores.get(member)
        if old is not None:
            if old == score or (greater_only and old > score):
                return
            self.entries.remove((old, member))
        self.scores[member] = score
        bisect.insort(self.entries, (score, member))

    def trim_to(self, low: float) -> None:
        """Drop members with a score <= low (ZREMRANGEBYSCORE -inf low)."""
        cut = bisect.bisect_right(self.entries, (low, "\U0010ffff"))
        for _, member in self.entries[:cut]:
            del self.scores[member]
        del self.entries[:cut]

    def cap(self, size: int) -> None:
        while len(self.entries) > size:
            _, member = self.entries.pop(0)
            del self.scores[member]

    def count_between(self, low: float, high: float = math.inf) -> int:
        """Members with a score in (low, high] (ZCOUNT (low high)."""
        return bisect.bisect_right(self.entries, (high, "\U0010ffff")) - bisect.bisect_right(
            self.entries, (low, "\U0010ffff")
        )


def user_features(entries: Iterable[tuple[float, str]], current: str, t: float) -> list[float]:
    """The user's features from their history in (t - 7 d, t] in (score, member) order, current included."""
    lows = [t - w for w in WINDOWS.values()]
    low_24h = t - WINDOWS["24h"]
    counts = [0.0, 0.0, 0.0]
    sums = [0.0, 0.0, 0.0]
    devices_24h: set[str] = set()
    devices_7d: set[str] = set()
    ips_24h: set[str] = set()
    countries: set[str] = set()
    previous: list[float] = []
    previous_sum = 0.0
    last_previous: float | None = None
    last_place: tuple[float, float, float] | None = None
    _, amount_text, lat_text, lon_text, device, ip, country = current.split("|")
    seen_device = seen_country = False
    for score, member in entries:
        _, e_amount, e_lat, e_lon, e_device, e_ip, e_country = member.split("|")
        value = float(e_amount)
        for k in range(3):
            if score > lows[k]:
                counts[k] += 1
                sums[k] += value
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
            if e_lat:
                last_place = (float(e_lat), float(e_lon), score)
            seen_device = seen_device or (bool(device) and e_device == device)
            seen_country = seen_country or (bool(country) and e_country == country)
    amount = float(amount_text)
    out = [*counts, *sums]
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
    if lat_text and last_place is not None:
        km = haversine_km(last_place[0], last_place[1], float(lat_text), float(lon_text))
        speed = km / (max(t - last_place[2], MIN_TRAVEL_S) / 3600.0)
    out += [km, speed]
    return out


class OfflineStore:
    """The online store's state, in memory, for one replay."""

    def __init__(self) -> None:
        self.users: dict[str, _Keyed] = {}
        self.devices: dict[str, _Keyed] = {}
        self.ip_events: dict[str, _Keyed] = {}
        self.ip_users: dict[str, _Keyed] = {}

    def observe(self, activity: Activity) -> list[float]:
        """Add one transaction to the state and return its state features (definitions.STATE_FEATURES)."""
        t = activity.time_s
        member = activity.member()
        history = self.users.setdefault(activity.user_id, _Keyed())
        history.add(t, member)
        history.trim_to(t - USER_HISTORY_S)
        history.cap(USER_HISTORY_MAX)
        out = user_features((e for e in history.entries if e[0] <= t), member, t)
        user = digest(activity.user_id)
        out.append(self._distinct(self.devices, activity.device_id, user, t, DEVICE_WINDOW_S))
        if activity.ip_address:
            events = self.ip_events.setdefault(activity.ip_address, _Keyed())
            events.add(t, member.split("|", 1)[0])
            events.trim_to(t - IP_COUNT_WINDOW_S)
            out.append(float(events.count_between(t - IP_COUNT_WINDOW_S, t)))
        else:
            out.append(MISSING)
        out.append(self._distinct(self.ip_users, activity.ip_address, user, t, IP_USERS_WINDOW_S))
        return out

    @staticmethod
    def _distinct(sets: dict[str, _Keyed], key: str | None, user: str, t: float, window: float) -> float:
        """Distinct users of a device or IP in the window: each user's latest time, kept for the window."""
        if not key:
            return MISSING
        users = sets.setdefault(key, _Keyed())
        users.add(t, user, greater_only=True)
        users.trim_to(t - window)
        return float(users.count_between(t - window))


def replay(activities: Sequence[Activity]) -> npt.NDArray[np.float64]:
    """State features of each transaction, computed in event-time order (ties in the given order); rows in
    the given order."""
    store = OfflineStore()
    out = np.full((len(activities), N_STATE), np.nan)
    for i in sorted(range(len(activities)), key=lambda i: activities[i].time_s):
        out[i] = store.observe(activities[i])
    return out
