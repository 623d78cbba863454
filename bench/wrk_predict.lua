-- wrk script: POST /predict (or the path given second) with bodies taken in turn from a file (one JSON body
-- per line). Like clients that ignore Retry-After, it sends the next request as soon as an answer comes.
--   wrk -s bench/wrk_predict.lua -c 64 -t 2 -d 10s http://127.0.0.1:8000 -- bodies.jsonl [/explain [2]]
-- With the thread count as third argument, thread k sends bodies k, k+n, k+2n, ...: no body is sent twice
-- in a run shorter than one pass over the file. Without it, each thread starts at a random body.
-- Prints one JSON line: requests, duration, latency percentiles (microseconds), statuses, socket errors.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  stride = tonumber(args[3])
  if stride then
    position = id - stride -- the first request() moves it to body number id
  else
    stride = 1
    position = math.random(#bodies)
  end
  path = args[2] or "/predict"
  statuses = {}
end

function request()
  position = (position + stride - 1) % #bodies + 1
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, bodies[position])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "statuses": {%s}, "socket_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
