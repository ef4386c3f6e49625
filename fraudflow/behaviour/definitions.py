"""Behaviour features: every window and feature, declared once, with what it means to a fraud analyst.

Features are computed at request time from the history of the transaction's user, device and IP address
(the online store, `online.py`) and, for training and backtests, by replaying a history in event-time order
(`offline.py`); both follow the rules written here, and a test holds them to identical vectors.

Rules common to all:
- Time is the transaction's own time (`metadata.timestamp`), in seconds since the epoch.
- A window of length W at time t holds the transactions with a time in (t - W, t]: the current one counts.
- "Previous" transactions are the user's others in the last 7 days with a time no later than the current's.
- A feature whose input is missing (no device id, no IP, no location, no earlier transaction) is missing
  (NaN, which the trees route on their own), never 0.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

from fraudflow.events import country_code

HOUR = 3600.0
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY}
USER_HISTORY_S = WINDOWS["7d"]  # the longest window: older transactions are forgotten
USER_HISTORY_MAX = 1000  # a user's most recent transactions kept; beyond, the oldest are dropped
DEVICE_WINDOW_S = WINDOWS["24h"]
IP_COUNT_WINDOW_S = WINDOWS["1h"]
IP_USERS_WINDOW_S = WINDOWS["24h"]
MIN_TRAVEL_S = 60.0  # the implied speed divides by at least a minute (two payments in the same second)
EARTH_RADIUS_KM = 6371.0088
RADIANS = math.pi / 180.0


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    phrase: str  # a value in words, for reasons: str.format with `v` (the value)


# Computed from the stored history (online.py and offline.py), in this order.
STATE_FEATURES = (
    Feature(
        "user_count_1h",
        "the user's transactions in the last hour, this one included",
        "{v:g} payments by the user in the last hour",
    ),
    Feature(
        "user_count_24h",
        "the user's transactions in the last 24 hours, this one included",
        "{v:g} payments by the user in the last 24 hours",
    ),
    Feature(
        "user_count_7d",
        "the user's transactions in the last 7 days, this one included",
        "{v:g} payments by the user in the last 7 days",
    ),
    Feature(
        "user_amount_1h",
        "the user's total amount in the last hour, this one included",
        "{v:,.2f} spent by the user in the last hour",
    ),
    Feature(
        "user_amount_24h",
        "the user's total amount in the last 24 hours, this one included",
        "{v:,.2f} spent by the user in the last 24 hours",
    ),
    Feature(
        "user_amount_7d",
        "the user's total amount in the last 7 days, this one included",
        "{v:,.2f} spent by the user in the last 7 days",
    ),
    Feature(
        "user_seconds_since_previous",
        "seconds since the user's previous transaction (7 days at most)",
        "{v:,.0f} s since the user's previous payment",
    ),
    Feature(
        "user_amount_to_mean",
        "this amount divided by the mean of the user's previous amounts (7 days)",
        "an amount {v:.1f} times the user's mean",
    ),
    Feature(
        "user_amount_zscore",
        "standard deviations between this amount and the user's previous mean",
        "an amount {v:.1f} standard deviations from the user's mean",
    ),
    Feature(
        "user_devices_24h",
        "distinct device ids of the user in the last 24 hours, this one included",
        "{v:g} devices used by the user in 24 hours",
    ),
    Feature(
        "user_devices_7d",
        "distinct device ids of the user in the last 7 days, this one included",
        "{v:g} devices used by the user in 7 days",
    ),
    Feature(
        "user_ips_24h",
        "distinct IP addresses of the user in the last 24 hours, this one included",
        "{v:g} IP addresses used by the user in 24 hours",
    ),
    Feature(
        "user_countries_7d",
        "distinct countries of the user in the last 7 days, this one included",
        "{v:g} countries for the user in 7 days",
    ),
    Feature(
        "user_new_device",
        "1 when the user has not used this device in the last 7 days, else 0",
        "new device for the user: {v:g} (1 = yes)",
    ),
    Feature(
        "user_new_country",
        "1 when the user has not paid from this country in the last 7 days, else 0",
        "new country for the user: {v:g} (1 = yes)",
    ),
    Feature(
        "user_km_from_previous",
        "km from the user's previous located transaction (7 days)",
        "{v:,.0f} km from the user's previous payment",
    ),
    Feature(
        "user_speed_kmh",
        "implied travel speed from that transaction (km/h): impossible travel",
        "an implied travel speed of {v:,.0f} km/h",
    ),
    Feature(
        "device_users_24h",
        "distinct users of this device in the last 24 hours (shared devices, mules)",
        "{v:g} users on this device in 24 hours",
    ),
    Feature(
        "ip_count_1h",
        "transactions from this IP address in the last hour, this one included",
        "{v:g} payments from this IP address in the last hour",
    ),
    Feature(
        "ip_users_24h",
        "distinct users of this IP address in the last 24 hours",
        "{v:g} users on this IP address in 24 hours",
    ),
)
# Computed from the transaction alone.
TIME_FEATURES = (
    Feature("hour_of_day", "hour of the transaction time in UTC (0-23)", "paid at hour {v:g} UTC"),
    Feature(
        "day_of_week", "day of the transaction time in UTC (0 = Monday)", "paid on day {v:g} of the week (0 = Monday)"
    ),
)
FEATURES = STATE_FEATURES + TIME_FEATURES
NAMES = tuple(feature.name for feature in FEATURES)
N_STATE = len(STATE_FEATURES)


@dataclass(frozen=True)
class Activity:
    """What the features are computed from: one transaction's identity, time, amount and metadata."""

    event_id: str
    user_id: str
    time_s: float
    amount: float
    device_id: str | None = None
    ip_address: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    def event_key(self) -> str:
        """The event as a history member starts, and as the IP's events are kept: 12 hex digits of its id."""
        return self.event_id.replace("-", "")[-12:]

    def place(self) -> tuple[float, float] | None:
        """Latitude and longitude, or None: a place needs both."""
        if self.latitude is None or self.longitude is None:
            return None
        return self.latitude, self.longitude

    def member(self) -> str:
        """The transaction as stored in its user's history: event id, amount (cents), place (3 decimals, about
        100 m), and short digests of device, IP and country (hex, so no separator can occur in them). At most
        64 bytes, which Redis keeps in its compact sorted-set encoding. Built once, here, for both paths; a
        retry of the same event writes the same member, so it is counted once."""
        place = self.place()
        return "|".join(
            (
                self.event_key(),
                kept_amount(self.amount),
                *((kept_degrees(place[0]), kept_degrees(place[1])) if place else ("", "")),
                short(self.device_id),
                short(self.ip_address),
                short(country_code(self.country)),
            )
        )


def kept_amount(amount: float) -> str:
    """An amount as a history keeps it: in cents."""
    return f"{amount:.2f}"


def kept_degrees(degrees: float) -> str:
    """A latitude or longitude as a history keeps it: 3 decimals, about 100 m."""
    return f"{degrees:.3f}"


def short(value: str | None) -> str:
    """An identifier as a history keeps it: 6 hex digits of its digest ("" for none)."""
    return digest(value)[:6]


@functools.lru_cache(maxsize=65_536)  # the same users, devices and IPs recur
def digest(value: str | None) -> str:
    """A short stable id for an identifier ("" for none): distinctness is all the features need of it."""
    return "" if not value else hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


def time_features(time_s: float) -> tuple[float, float]:
    """Hour of day and day of week (Monday 0) in UTC."""
    days, seconds = divmod(time_s, DAY)
    return float(int(seconds // HOUR)), float((int(days) + 3) % 7)  # 1970-01-01 was a Thursday


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance, written as the Lua script computes it (online.py), operation for operation."""
    p1, p2 = lat1 * RADIANS, lat2 * RADIANS
    dp, dl = (lat2 - lat1) * RADIANS, (lon2 - lon1) * RADIANS
    a = math.sin(dp / 2) * math.sin(dp / 2) + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) * math.sin(dl / 2)
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))
