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

local function fmt(x)
  if x == nil then return MISSING end
  return string.format("%.17g", x)
end

local MEMBER = "^[^|]*|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$"
local match = string.match

local function size(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

local function distinct(key, user, t, ts, window)
  redis.call("ZADD", key, "GT", ts, user)
  local low = fmt(t - window)
  redis.call("ZREMRANGEBYSCORE", key, "-inf", low)
  redis.call("PEXPIRE", key, math.ceil(window * 1000))
  return redis.call("ZCOUNT", key, "(" .. low, "+inf")
end

local function user_features(entries, current, t, out)
  local lows = {t - W[1], t - W[2], t - W[3]}
  local low_24h = t - W[2]
  local counts, sums = {0, 0, 0}, {0.0, 0.0, 0.0}
  local devices_24h, devices_7d, ips_24h, countries = {}, {}, {}, {}
  local previous, previous_sum, last_previous, last_place = {}, 0.0, nil, nil
  local c_amount, c_lat, c_lon, device, ip, country = match(current, MEMBER)
  local seen_device, seen_country = false, false
  for i = 1, #entries, 2 do
    local member, score = entries[i], tonumber(entries[i + 1])
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
  for k = 1, 3 do out[#out + 1] = counts[k] end  -- whole numbers: concat writes them exactly
  for k = 1, 3 do out[#out + 1] = fmt(sums[k]) end
  if last_previous == nil then out[#out + 1] = MISSING else out[#out + 1] = fmt(t - last_previous) end
  local ratio, zscore = nil, nil
  if #previous > 0 then
    local mean = previous_sum / #previous
    if mean > 0 then ratio = amount / mean end
    if #previous >= 2 then
      local squares = 0.0
      for _, value in ipairs(previous) do squares = squares + (value - mean) * (value - mean) end
      local std = math.sqrt(squares / (#previous - 1))
      if std > 0 then zscore = (amount - mean) / std end
    end
  end
  out[#out + 1] = fmt(ratio)
  out[#out + 1] = fmt(zscore)
  if device ~= "" then
    out[#out + 1] = size(devices_24h)
    out[#out + 1] = size(devices_7d)
  else
    out[#out + 1] = MISSING
    out[#out + 1] = MISSING
  end
  if ip ~= "" then out[#out + 1] = size(ips_24h) else out[#out + 1] = MISSING end
  if country ~= "" then out[#out + 1] = size(countries) else out[#out + 1] = MISSING end
  if device ~= "" then out[#out + 1] = seen_device and 0 or 1 else out[#out + 1] = MISSING end
  if country ~= "" then out[#out + 1] = seen_country and 0 or 1 else out[#out + 1] = MISSING end
  if c_lat ~= "" and last_place ~= nil then
    local lat1, lon1, lat2, lon2 = last_place[1], last_place[2], tonumber(c_lat), tonumber(c_lon)
    local p1, p2 = lat1 * RAD, lat2 * RAD
    local dp, dl = (lat2 - lat1) * RAD, (lon2 - lon1) * RAD
    local a = math.sin(dp / 2) * math.sin(dp / 2) + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) * math.sin(dl / 2)
    local km = 2 * RADIUS * math.asin(math.sqrt(math.min(1.0, a)))
    out[#out + 1] = fmt(km)
    out[#out + 1] = fmt(km / (math.max(t - last_place[3], MIN_TRAVEL) / 3600.0))
  else
    out[#out + 1] = MISSING
    out[#out + 1] = MISSING
  end
end

local out = {}
for j = 0, #ARGV - 1 do
  local ts, user, device_flag, ip_flag, member = match(ARGV[j + 1], TRANSACTION)
  local t = tonumber(ts)
  local has_device, has_ip = device_flag == "1", ip_flag == "1"
  local user_key, device_key = KEYS[j * 4 + 1], KEYS[j * 4 + 2]
  local ip_events_key, ip_users_key = KEYS[j * 4 + 3], KEYS[j * 4 + 4]
  redis.call("ZADD", user_key, ts, member)
  redis.call("ZREMRANGEBYSCORE", user_key, "-inf", fmt(t - HISTORY))
  local kept = redis.call("ZCARD", user_key)
  if kept > HISTORY_MAX then redis.call("ZREMRANGEBYRANK", user_key, 0, kept - HISTORY_MAX - 1) end
  redis.call("PEXPIRE", user_key, math.ceil(HISTORY * 1000))
  user_features(redis.call("ZRANGEBYSCORE", user_key, "-inf", ts, "WITHSCORES"), member, t, out)
  if has_device then out[#out + 1] = distinct(device_key, user, t, ts, DEVICE_W) else out[#out + 1] = MISSING end
  if has_ip then
    redis.call("ZADD", ip_events_key, ts, string.sub(member, 1, string.find(member, "|", 1, true) - 1))
    local low = fmt(t - IP_COUNT_W)
    redis.call("ZREMRANGEBYSCORE", ip_events_key, "-inf", low)
    redis.call("PEXPIRE", ip_events_key, math.ceil(IP_COUNT_W * 1000))
    out[#out + 1] = redis.call("ZCOUNT", ip_events_key, "(" .. low, ts)
    out[#out + 1] = distinct(ip_users_key, user, t, ts, IP_USERS_W)
  else
    out[#out + 1] = MISSING
    out[#out + 1] = MISSING
  end
end
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
