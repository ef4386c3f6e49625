"""Behaviour features over a history, replayed in event-time order: for training and backtests.

The same rules as the online store's Lua script (`online.py`), computed a column at a time with numpy rather
than a transaction at a time: each window is a range of rows of its user's (device's, IP's) rows in time
order, found by an exact merge; each sum is accumulated left to right across all the rows at once, so every
value is the script's, to the last bit (tests/test_behaviour.py). A user with tied times (whose order is then
the members') or more transactions than a history keeps is replayed one transaction at a time
(`sequential.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudflow.behaviour.definitions import (
    DEVICE_WINDOW_S,
    IP_COUNT_WINDOW_S,
    IP_USERS_WINDOW_S,
    MIN_TRAVEL_S,
    N_STATE,
    STATE_FEATURES,
    USER_HISTORY_MAX,
    WINDOWS,
    Activity,
    haversine_km,
    kept_amount,
    kept_degrees,
    short,
)
from fraudflow.behaviour.sequential import UserHistories
from fraudflow.events import country_code

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
N_SHARED = 3  # device_users_24h, ip_count_1h, ip_users_24h: the last state features
N_USER = N_STATE - N_SHARED
_AT = {feature.name: i for i, feature in enumerate(STATE_FEATURES)}  # a feature's column


def _codes(values: Sequence[str | None]) -> tuple[Ints, list[str]]:
    """Small integers for values, in order of appearance (-1: none or empty), and the distinct values."""
    table: dict[str | None, int] = {}
    codes = np.array([table.setdefault(value, len(table)) for value in values], dtype=np.int64)
    distinct = list(table)
    known = np.array([-1 if not value else i for i, value in enumerate(distinct)], dtype=np.int64)
    return known[codes] if len(codes) else codes, [value or "" for value in distinct]


def _recoded(codes: Ints, distinct: list[str], how: Callable[[str], str]) -> Ints:
    """Codes of how(value) for the values coded: e.g. the short digests the histories keep, which may collide."""
    again, _ = _codes([how(value) for value in distinct])
    return np.where(codes >= 0, again[codes], -1) if len(codes) else codes


def _kept(values: Sequence[float | None], kept: Callable[[float], str]) -> Floats:
    return np.array([math.nan if value is None else float(kept(value)) for value in values], dtype=np.float64)


@dataclass(frozen=True)
class _Columns:
    """The transactions as their user's history holds them (Activity.member(), parsed), one array per field."""

    time: Floats
    amount: Floats
    latitude: Floats  # NaN: not located
    longitude: Floats
    user: Ints
    device: Ints  # the history's short digests: what a user's distinct counts count; -1: unknown
    ip: Ints
    country: Ints
    device_key: Ints  # the identifiers themselves: what the device's and the IP's state is kept by
    ip_key: Ints

    @classmethod
    def of(cls, activities: Sequence[Activity]) -> _Columns:
        places = [a.place() or (None, None) for a in activities]
        user, _ = _codes([a.user_id for a in activities])
        device_key, devices = _codes([a.device_id for a in activities])
        ip_key, ips = _codes([a.ip_address for a in activities])
        country, countries = _codes([country_code(a.country) for a in activities])
        return cls(
            time=np.array([a.time_s for a in activities], dtype=np.float64),
            amount=_kept([a.amount for a in activities], kept_amount),
            latitude=_kept([lat for lat, _ in places], kept_degrees),
            longitude=_kept([lon for _, lon in places], kept_degrees),
            user=user,
            device=_recoded(device_key, devices, short),
            ip=_recoded(ip_key, ips, short),
            country=_recoded(country, countries, short),
            device_key=device_key,
            ip_key=ip_key,
        )

    def take(self, rows: Ints) -> _Columns:
        return _Columns(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


def _starts(group: Ints, time: Floats, window: float) -> Ints:
    """For rows sorted by (group, time): the first row of each row's group with a time in (time - window,
    time]. Times become exact ranks (how many times are no later), so one integer key orders group and time."""
    clock = np.sort(time)
    span = len(time) + 1
    rows = group * span + np.searchsorted(clock, time, side="right")
    bounds = group * span + np.searchsorted(clock, time - window, side="right")
    return np.searchsorted(rows, bounds, side="right")


def _accumulate(starts: Ints, stops: Ints, term: Callable[[Ints, Ints], Floats]) -> Floats:
    """For each row r: 0.0 + term(r, i) for i = starts[r], ..., stops[r] - 1, added left to right as the
    script adds (every row's k-th term in one step)."""
    total = np.zeros(len(starts))
    rows = np.flatnonzero(stops > starts)
    i = starts[rows]
    while rows.size:
        total[rows] += term(rows, i)
        i = i + 1
        more = i < stops[rows]
        rows, i = rows[more], i[more]
    return total


def _previous_same(group: Ints, value: Ints) -> Ints:
    """For rows sorted by (group, time): the row before each in the same group with the same value, or -1."""
    key = group * (int(value.max(initial=0)) + 2) + value + 1
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    previous = np.full(len(group), -1, dtype=np.int64)
    previous[order[1:][same]] = order[:-1][same]
    return previous


def _distinct(value: Ints, previous: Ints, starts: Ints, stops: Ints) -> Floats:
    """Distinct known values in each row's range: the rows whose value has not occurred earlier in it."""
    return _accumulate(starts, stops, lambda rows, i: ((value[i] >= 0) & (previous[i] < starts[rows])).astype(float))


def _known(value: Ints, figures: Floats) -> Floats:
    return np.where(value >= 0, figures, math.nan)


def _user_features(c: _Columns) -> Floats:
    """The user features of rows sorted by (user, time), no user with tied times or a capped history."""
    rows = np.arange(len(c.time))
    out = np.full((len(rows), N_USER), math.nan)
    starts = [_starts(c.user, c.time, w) for w in WINDOWS.values()]
    start_24h, start_7d = starts[1], starts[2]
    for window, start in zip(WINDOWS, starts, strict=True):
        out[:, _AT[f"user_count_{window}"]] = rows - start + 1
        out[:, _AT[f"user_amount_{window}"]] = _accumulate(start, rows + 1, lambda _, i: c.amount[i])
    previous = rows - start_7d  # the user's others in the last 7 days: all before this row
    has_previous = previous > 0
    before = np.maximum(rows - 1, 0)
    out[:, _AT["user_seconds_since_previous"]] = np.where(has_previous, c.time - c.time[before], math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _accumulate(start_7d, rows, lambda _, i: c.amount[i]) / previous
        out[:, _AT["user_amount_to_mean"]] = np.where(has_previous & (mean > 0), c.amount / mean, math.nan)
        squares = _accumulate(start_7d, rows, lambda r, i: (c.amount[i] - mean[r]) * (c.amount[i] - mean[r]))
        std = np.sqrt(squares / (previous - 1))
        out[:, _AT["user_amount_zscore"]] = np.where((previous >= 2) & (std > 0), (c.amount - mean) / std, math.nan)
    device, ip, country = (_previous_same(c.user, value) for value in (c.device, c.ip, c.country))
    out[:, _AT["user_devices_24h"]] = _known(c.device, _distinct(c.device, device, start_24h, rows + 1))
    out[:, _AT["user_devices_7d"]] = _known(c.device, _distinct(c.device, device, start_7d, rows + 1))
    out[:, _AT["user_ips_24h"]] = _known(c.ip, _distinct(c.ip, ip, start_24h, rows + 1))
    out[:, _AT["user_countries_7d"]] = _known(c.country, _distinct(c.country, country, start_7d, rows + 1))
    # Used in the last 7 days: not new.
    out[:, _AT["user_new_device"]] = _known(c.device, np.where(device >= start_7d, 0.0, 1.0))
    out[:, _AT["user_new_country"]] = _known(c.country, np.where(country >= start_7d, 0.0, 1.0))
    located = ~np.isnan(c.latitude)
    last_located = np.maximum.accumulate(np.where(located, rows, -1))[before]  # the latest one before each row
    for r in np.flatnonzero(located & has_previous & (last_located >= start_7d)):
        last = last_located[r]
        km = haversine_km(c.latitude[last], c.longitude[last], c.latitude[r], c.longitude[r])
        out[r, _AT["user_km_from_previous"]] = km
        out[r, _AT["user_speed_kmh"]] = km / (max(c.time[r] - c.time[last], MIN_TRAVEL_S) / 3600.0)
    return out


def _by(value: Ints, c: _Columns) -> tuple[Ints, Ints, _Columns]:
    """The rows with a known value, sorted by (value, time, given order): the order the store sees them in."""
    known = np.flatnonzero(value >= 0)
    order = known[np.lexsort((known, c.time[known], value[known]))]
    return order, value[order], c.take(order)


def _users_in(group: Ints, s: _Columns, window: float) -> Floats:
    """Distinct users of each row's group (a device, an IP) in the window, for rows sorted by (group, time)."""
    return _distinct(s.user, _previous_same(group, s.user), _starts(group, s.time, window), np.arange(len(group)) + 1)


def _shared_features(c: _Columns) -> Floats:
    """The devices' and IPs' features (the last state features), in the given rows' order."""
    out = np.full((len(c.time), N_SHARED), math.nan)
    order, device, s = _by(c.device_key, c)
    out[order, _AT["device_users_24h"] - N_USER] = _users_in(device, s, DEVICE_WINDOW_S)
    order, ip, s = _by(c.ip_key, c)
    out[order, _AT["ip_count_1h"] - N_USER] = np.arange(len(order)) - _starts(ip, s.time, IP_COUNT_WINDOW_S) + 1
    out[order, _AT["ip_users_24h"] - N_USER] = _users_in(ip, s, IP_USERS_WINDOW_S)
    return out


def replay(activities: Sequence[Activity]) -> Floats:
    """State features of each transaction, computed in event-time order (ties in the given order); rows in
    the given order. A history holds each event once (event ids are unique)."""
    c = _Columns.of(activities)
    out = np.full((len(activities), N_STATE), math.nan)
    out[:, N_USER:] = _shared_features(c)
    order = np.lexsort((np.arange(len(activities)), c.time, c.user))  # each user's rows together, in time order
    user, time = c.user[order], c.time[order]
    # Users with tied times or a capped history are replayed one transaction at a time.
    sequential = np.zeros(int(user.max(initial=-1)) + 1, dtype=bool)
    sequential[user[1:][(user[1:] == user[:-1]) & (time[1:] == time[:-1])]] = True
    sequential |= np.bincount(user, minlength=len(sequential)) > USER_HISTORY_MAX
    columnar = order[~sequential[user]]
    out[columnar, :N_USER] = _user_features(c.take(columnar))
    histories = UserHistories()
    for i in sorted(order[sequential[user]].tolist(), key=lambda i: activities[i].time_s):
        out[i, :N_USER] = histories.observe(activities[i])
    return out
