-- wrk script: POST /predict with a user_id drawn from 100,000 users (partition keys vary as in real traffic),
-- each user paying from their own device and IP address (as most do: one shared by every user would be a
-- mule farm, the online store's worst case, not its typical one).
-- Optional arguments: a delay in ms between requests on each connection (a fixed-rate mode; 0: none), and
-- the number of users (1: every request from one user_id, a hot partition key).
local data = "406, -2.3122, 1.952, -1.6099, 3.9979, -0.5222, -1.4265, -2.5374, 1.3917, -2.7701, -2.7723, " ..
  "3.202, -2.8999, -0.5952, -4.2893, 0.3897, -1.1407, -2.8301, -0.0168, 0.417, 0.1269, 0.5172, -0.035, " ..
  "-0.4652, 0.3202, 0.0445, 0.1778, 0.2611, -0.1433, 12.5"
local head = '{"metadata":{"timestamp":"2025-08-21T17:45:00","source":"bench","user_id":"u'
local tail = '"device_type":"mobile"},"geo":{"country":"FR","city":"Paris","latitude":48.85,"longitude":2.35}},' ..
  '"data":"' .. data .. '"}'
local delay_ms = 0
local users = 100000

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  if args[1] then delay_ms = tonumber(args[1]) end
  if args[2] then users = tonumber(args[2]) end
end

function request()
  local user = math.random(1, users)
  local ip = string.format("10.%d.%d.%d", math.floor(user / 65536) % 256, math.floor(user / 256) % 256, user % 256)
  return wrk.format(nil, "/predict", nil,
    head .. user .. '","ip_address":"' .. ip .. '","device_info":{"device_id":"d' .. user .. '",' .. tail)
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
