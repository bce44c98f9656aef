-- wrk script of the notification benchmark: POST the bodies of a file, one per line.
--
--   wrk -t T -c C -d SECONDS -s notification.lua URL -- BODIES_FILE T
--
-- Thread i sends lines i+1, i+1+T, i+1+2T... in order. A thread that reaches the end of
-- the file starts it again (every delivery is then a repeat); done() reports how often that
-- happened, with the usual figures, as one JSON line that the benchmark reads, followed by
-- the latency histogram ("H <microseconds> <count>" lines) so that runs can be merged.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  bodies = {}
  local index = 0
  for line in io.lines(path) do
    if index % thread_count == id then
      bodies[#bodies + 1] = line
    end
    index = index + 1
  end
  position, wraps = 0, 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  position = position + 1
  if position > #bodies then
    position, wraps = 1, wraps + 1
  end
  return wrk.format("POST", nil, headers, bodies[position])
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, "wraps": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    wrapped))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("H %d %d\n", value, count))
  end
end
