"""The online feature store: each user's, device's and IP's recent history in Redis (or Valkey).

One Lua script call per micro-batch adds the batch's transactions to the state and returns their features,
atomically: a burst is counted from one transaction to the next across any number of API processes. Every
write is idempotent (a retried event writes the same sorted-set member with the same score), and every key
expires with its longest window. The script follows `definitions.py` step for step, as `offline.py` does.

Keys (cluster mode would need every key of a call in one slot: use a non-clustered primary with replicas):
  ff:u:<user>   sorted set: the user's transactions of the last 7 days (member: Activity.member(), score: time)
  ff:d:<device> sorted set: users of the device, scored by when each was last seen (24 h)
  ff:ie:<ip>    sorted set: the IP's transactions (event ids) of the last hour
  ff:iu:<ip>    sorted set: users of the IP, scored by when each was last seen (24 h)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from redis.asyncio import Redis

from fraudflow.behaviour.definitions import (
    DEVICE_WINDOW_S,
    EARTH_RADIUS_KM,
    IP_COUNT_WINDOW_S,
    IP_USERS_WINDOW_S,
    MIN_TRAVEL_S,
    N_STATE,
    RADIANS,
    USER_HISTORY_MAX,
    USER_HISTORY_S,
    WINDOWS,
    Activity,
    digest,
)
from fraudflow.config import Settings

_NONE_KEY = "ff:none"  # stands in for a device or IP the transaction does not have; never written

# The definitions' constants open the script as Lua literals (repr: the shortest text that reads back as the
# same double), so a call carries only its transactions.
_CONSTANTS = {
    "HISTORY": USER_HISTORY_S,
    "HISTORY_MAX": USER_HISTORY_MAX,
    "W_1H": WINDOWS["1h"],
    "W_24H": WINDOWS["24h"],
    "W_7D": WINDOWS["7d"],
    "DEVICE_W": DEVICE_WINDOW_S,
    "IP_COUNT_W": IP_COUNT_WINDOW_S,
    "IP_USERS_W": IP_USERS_WINDOW_S,
    "MIN_TRAVEL": MIN_TRAVEL_S,
    "RADIUS": EARTH_RADIUS_KM,
    "RAD": RADIANS,
}

SCRIPT = (
    "".join(f"local {name} = {value!r}\n" for name, value in _CONSTANTS.items())
    + """
local W = {W_1H, W_24H, W_7D}
local MISSING = "nan"
-- A transaction's argument: its time (as fmt writes it), user digest, has device and IP (0/1), member.
local TRANSACTION = "^(%S+) (%S+) ([01])([01]) (.+)$"
local MEMBER = "^[^|]*|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$"
-- Locals: a global or a table field is looked up on every use.
local call, match, format, tonumber, pairs = redis.call, string.match, string.format, tonumber, pairs
local sin, cos, asin, sqrt, min, max, ceil = math.sin, math.cos, math.asin, math.sqrt, math.min, math.max, math.ceil

-- Every number leaves as text that reads back as the same double; formatting costs about a microsecond, as
-- much as a command, so the script formats only what it must.
local function fmt(x)
  if x == nil then return MISSING end
  return format("%.17g", x)
end

local function size(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- Each key's time to live, set once per call at the end (a key may occur many times in a batch).
local expiring = {}

local function distinct(key, user, ts, low, window)
  call("ZADD", key, "GT", ts, user)
  call("ZREMRANGEBYSCORE", key, "-inf", low)
  expiring[key] = window
  return call("ZCARD", key)  -- what is left is in the window
end

-- The user's features from its history `entries` (member, score, ...: the kept ones from index `first`, in
-- score order), `current` the transaction's member, at time t.
local function user_features(entries, first, current, t, out, n)
  local lows = {t - W[1], t - W[2], t - W[3]}
  local low_24h = lows[2]
  local counts, sums = {0, 0, 0}, {0.0, 0.0, 0.0}
  local devices_24h, devices_7d, ips_24h, countries = {}, {}, {}, {}
  local previous, previous_sum, last_previous, last_place = {}, 0.0, nil, nil
  local c_amount, c_lat, c_lon, device, ip, country = match(current, MEMBER)
  local seen_device, seen_country = false, false
  for i = first, #entries, 2 do
    local member, score = entries[i], tonumber(entries[i + 1])
    if score > t then break end  -- later transactions (arrived out of order) are not history yet
    local e_amount, e_lat, e_lon, e_device, e_ip, e_country = match(member, MEMBER)
    local value = tonumber(e_amount)
    for k = 1, 3 do
      if score > lows[k] then
        counts[k] = counts[k] + 1
        sums[k] = sums[k] + value
      end
    end
    if e_device ~= "" then
      devices_7d[e_device] = true
      if score > low_24h then devices_24h[e_device] = true end
    end
    if e_ip ~= "" and score > low_24h then ips_24h[e_ip] = true end
    if e_country ~= "" then countries[e_country] = true end
    if member ~= current then
      previous[#previous + 1] = value
      previous_sum = previous_sum + value
      last_previous = score
      if e_lat ~= "" then last_place = {tonumber(e_lat), tonumber(e_lon), score} end
      if device ~= "" and e_device == device then seen_device = true end
      if country ~= "" and e_country == country then seen_country = true end
    end
  end
  local amount = tonumber(c_amount)
  for k = 1, 3 do out[n + k] = counts[k] end  -- whole numbers: concat writes them exactly
  for k = 1, 3 do out[n + 3 + k] = fmt(sums[k]) end
  if last_previous == nil then out[n + 7] = MISSING else out[n + 7] = fmt(t - last_previous) end
  local ratio, zscore = nil, nil
  if #previous > 0 then
    local mean = previous_sum / #previous
    if mean > 0 then ratio = amount / mean end
    if #previous >= 2 then
      local squares = 0.0
      for _, value in ipairs(previous) do squares = squares + (value - mean) * (value - mean) end
      local std = sqrt(squares / (#previous - 1))
      if std > 0 then zscore = (amount - mean) / std end
    end
  end
  out[n + 8] = fmt(ratio)
  out[n + 9] = fmt(zscore)
  if device ~= "" then
    out[n + 10] = size(devices_24h)
    out[n + 11] = size(devices_7d)
  else
    out[n + 10] = MISSING
    out[n + 11] = MISSING
  end
  if ip ~= "" then out[n + 12] = size(ips_24h) else out[n + 12] = MISSING end
  if country ~= "" then out[n + 13] = size(countries) else out[n + 13] = MISSING end
  if device ~= "" then out[n + 14] = seen_device and 0 or 1 else out[n + 14] = MISSING end
  if country ~= "" then out[n + 15] = seen_country and 0 or 1 else out[n + 15] = MISSING end
  if c_lat ~= "" and last_place ~= nil then
    local lat1, lon1, lat2, lon2 = last_place[1], last_place[2], tonumber(c_lat), tonumber(c_lon)
    local p1, p2 = lat1 * RAD, lat2 * RAD
    local dp, dl = (lat2 - lat1) * RAD, (lon2 - lon1) * RAD
    local a = sin(dp / 2) * sin(dp / 2) + cos(p1) * cos(p2) * sin(dl / 2) * sin(dl / 2)
    local km = 2 * RADIUS * asin(sqrt(min(1.0, a)))
    out[n + 16] = fmt(km)
    out[n + 17] = fmt(km / (max(t - last_place[3], MIN_TRAVEL) / 3600.0))
  else
    out[n + 16] = MISSING
    out[n + 17] = MISSING
  end
  return n + 17
end

local out, n = {}, 0
for j = 0, #ARGV - 1 do
  local ts, user, device_flag, ip_flag, member = match(ARGV[j + 1], TRANSACTION)
  local t = tonumber(ts)
  local user_key, device_key = KEYS[j * 4 + 1], KEYS[j * 4 + 2]
  local ip_events_key, ip_users_key = KEYS[j * 4 + 3], KEYS[j * 4 + 4]
  call("ZADD", user_key, ts, member)
  -- The whole history in one read: what falls out of it (older than its window, beyond its cap: the oldest
  -- first) is found here and removed by rank, and the rest is the history the features read.
  local entries = call("ZRANGE", user_key, 0, -1, "WITHSCORES")
  local total, gone, low_history = #entries / 2, 0, t - HISTORY
  while gone < total and tonumber(entries[gone * 2 + 2]) <= low_history do gone = gone + 1 end
  if total - gone > HISTORY_MAX then gone = total - HISTORY_MAX end
  if gone > 0 then call("ZREMRANGEBYRANK", user_key, 0, gone - 1) end
  expiring[user_key] = HISTORY
  n = user_features(entries, gone * 2 + 1, member, t, out, n)
  -- A window's start as text, formatted once per transaction (the device's and the IP's users' agree).
  local starts = {}
  local function start(window)
    local text = starts[window]
    if text == nil then text = fmt(t - window); starts[window] = text end
    return text
  end
  if device_flag == "1" then out[n + 1] = distinct(device_key, user, ts, start(DEVICE_W), DEVICE_W)
  else out[n + 1] = MISSING end
  if ip_flag == "1" then
    local low = start(IP_COUNT_W)
    call("ZADD", ip_events_key, ts, string.sub(member, 1, string.find(member, "|", 1, true) - 1))
    call("ZREMRANGEBYSCORE", ip_events_key, "-inf", low)
    expiring[ip_events_key] = IP_COUNT_W
    out[n + 2] = call("ZCOUNT", ip_events_key, "(" .. low, ts)
    out[n + 3] = distinct(ip_users_key, user, ts, start(IP_USERS_W), IP_USERS_W)
  else
    out[n + 2] = MISSING
    out[n + 3] = MISSING
  end
  n = n + 3
end
for key, window in pairs(expiring) do call("PEXPIRE", key, ceil(window * 1000)) end
-- One string for the batch: the client parses it in one call, not a reply per value.
return table.concat(out, ",")
"""
)


def _call(activities: Sequence[Activity]) -> tuple[list[str], list[str]]:
    """The script's KEYS (four per transaction) and ARGV (one per transaction: fewer arguments to encode)."""
    keys: list[str] = []
    argv: list[str] = []
    for activity in activities:
        user, device, ip = digest(activity.user_id), digest(activity.device_id), digest(activity.ip_address)
        keys += [
            f"ff:u:{user}",
            f"ff:d:{device}" if device else _NONE_KEY,
            f"ff:ie:{ip}" if ip else _NONE_KEY,
            f"ff:iu:{ip}" if ip else _NONE_KEY,
        ]
        argv.append(f"{activity.time_s:.17g} {user} {int(bool(device))}{int(bool(ip))} {activity.member()}")
    return keys, argv


def feature_store(settings: Settings) -> OnlineStore | None:
    """The store FRAUDFLOW_REDIS_URL names (None when unset). Connecting may take no longer than the feature
    budget: a store that does not answer in time is a store that is down."""
    if settings.redis_url is None:
        return None
    token = settings.redis_auth_token.get_secret_value() if settings.redis_auth_token else None
    client = Redis.from_url(
        settings.redis_url.get_secret_value(),
        password=token,
        socket_connect_timeout=settings.features_budget_ms / 1000,
        health_check_interval=30,
    )
    return OnlineStore(client)


class OnlineStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(SCRIPT)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def observe(self, activities: Sequence[Activity]) -> npt.NDArray[np.float64]:
        """Add the transactions to the state, in order, and return their state features (n, N_STATE)."""
        if not activities:
            return np.empty((0, N_STATE))
        keys, argv = _call(activities)
        reply = await self._script(keys=keys, args=argv)
        return np.array(reply.split(b",")).astype(np.float64).reshape(-1, N_STATE)  # "nan": unknown
