-- wrk script of the status-poll benchmark: each request asks about a job picked at random from
-- BENCH_IDS_FILE (lines "<primary key> <uuid>"), on the path BENCH_PATH_TEMPLATE with {pk} or
-- {uuid} filled in, with a bearer token when BENCH_TOKEN is set. done() prints one JSON line.

local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  local pk, uuid = line:match("^(%S+) (%S+)$")
  if pk then
    ids[#ids + 1] = { pk = pk, uuid = uuid }
  end
end

local template = os.getenv("BENCH_PATH_TEMPLATE")
local token = os.getenv("BENCH_TOKEN") or ""
local headers = {}
if token ~= "" then
  headers["Authorization"] = "Bearer " .. token
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  math.randomseed(7919 * (thread_number or 1))
end

function request()
  local id = ids[math.random(#ids)]
  local path = template:gsub("{pk}", id.pk):gsub("{uuid}", id.uuid)
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"mean_us": %.1f, "errors_connect": %d, "errors_read": %d, "errors_write": %d, '
      .. '"errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
