-- wrk reporter: one machine-readable line with the numbers bench/wrk_report.py needs.
-- "status" counts non-2xx/3xx answers; the others are socket errors. With
-- WRK_COUNT_STATUS=1 each thread also counts answers by status code (this
-- costs the client a little per response, so the fast chains go without it).
local threads = {}
local count_status = os.getenv("WRK_COUNT_STATUS") == "1"

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
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
