-- wrk script: each request GETs the next path from a file (one path a line), cycling.
-- Usage: wrk ... -s bench/handles.lua http://HOST:PORT -- PATHS_FILE [RATE CONNECTIONS]
-- With RATE (requests/s for this wrk thread) and its CONNECTIONS, each connection waits
-- CONNECTIONS/RATE seconds between requests (wrk's delay(), whole milliseconds, dithered so
-- the mean is exact): an offered load below the maximum, for latency at a given load.
-- At the end it prints one line "wrk-json {...}" that bench/wrk.py parses.
-- Writes: WRK_METHOD (e.g. PUT) with the body in the file WRK_BODY_FILE and the header
-- Authorization: WRK_AUTHORIZATION, sent as JSON to each path in turn (bench/write_cost.py).

local paths = {}
local n = 0
local i = 0

local interval_ms = nil

local method = os.getenv("WRK_METHOD") or "GET"
local body = nil
local headers = nil

function init(args)
  if args[2] then
    interval_ms = tonumber(args[3]) / tonumber(args[2]) * 1000
  end
  for line in io.lines(args[1]) do
    n = n + 1
    paths[n] = line
  end
  if n == 0 then
    error("no paths in " .. tostring(args[1]))
  end
  -- Threads start at different offsets so they do not request in lockstep.
  i = math.random(n) - 1
  if method ~= "GET" then
    local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
    body = file:read("*a")
    file:close()
    headers = {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("WRK_AUTHORIZATION")}
  end
end

function delay()
  if interval_ms == nil then
    return 0
  end
  local whole = math.floor(interval_ms)
  if math.random() < interval_ms - whole then
    whole = whole + 1
  end
  return whole
end

function request()
  i = i % n + 1
  if body == nil then
    return wrk.format("GET", paths[i])
  end
  return wrk.format(method, paths[i], headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
