-- wrk script: POST distinct pre-signed Iverton events, cycling through a file.
-- Usage: wrk -t1 -c4 -d3s -s cycle.lua http://127.0.0.1:PORT/path -- events.tsv OFFSET
-- Each line of events.tsv is "<X-Iverton-Signature>\t<raw JSON body>"; OFFSET says where
-- this run starts, so successive runs against a deduplicating receiver send new events.

local events = {}
local i = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local signature, body = line:match("^([^\t]+)\t(.*)$")
    events[#events + 1] = { signature, body }
  end
  f:close()
  i = tonumber(args[2] or "0") or 0
end

function request()
  i = i % #events + 1
  local event = events[i]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Iverton-Signature"] = event[1],
  }, event[2])
end

-- One JSON line the driver parses: throughput inputs, latency percentiles, errors.
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "status_errors": %d, ' ..
    '"connect_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
end
