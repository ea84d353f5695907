-- wrk reporter: one machine-readable line with the numbers bench/wrk_report.py needs.
-- "status" counts non-2xx/3xx answers; the others are socket errors. With
-- WRK_COUNT_STATUS=1 each thread also counts answers by status code (this
-- costs the client a little per response, so the fast chains go without it).
-- With WRK_TARGETS=<file> ("path<TAB>token" lines, bench/workloads.py), each
-- request takes the next line, every thread starting at a different one.
local threads = {}
local count_status = os.getenv("WRK_COUNT_STATUS") == "1"
local targets_file = os.getenv("WRK_TARGETS") or ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("first", #threads * 7919)
end

function init(args)
  statuses = {}
end

if targets_file ~= "" then
  -- Formatted on a thread's first request, when wrk.headers has the Host.
  local requests, n, i = nil, 0, 0
  function request()
    if requests == nil then
      requests = {}
      for line in io.lines(targets_file) do
        local path, token = line:match("^(%S+)\t(%S+)$")
        if path then
          table.insert(requests, wrk.format("GET", path, {["Host"] = wrk.headers["Host"],
            ["Authorization"] = "Bearer " .. token}))
        end
      end
      n = #requests
      i = (first or 0) % n
    end
    i = i % n + 1
    return requests[i]
  end
end

if count_status then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

done = function(summary, latency, requests)
  local by_status = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for status, n in pairs(counts) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(by_status) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"by_status":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ",")))
end
