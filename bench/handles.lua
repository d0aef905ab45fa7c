-- wrk script: each request GETs the next path from a file (one path a line), cycling.
-- Usage: wrk ... -s bench/handles.lua http://HOST:PORT -- PATHS_FILE
-- At the end it prints one line "wrk-json {...}" that bench/wrk.py parses.

local paths = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    paths[n] = line
  end
  if n == 0 then
    error("no paths in " .. tostring(args[1]))
  end
  -- Threads start at different offsets so they do not request in lockstep.
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return wrk.format("GET", paths[i])
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
