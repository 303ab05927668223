-- wrk script for bench/run.py: POSTs one fixed body and checks every answer.
-- Environment: BENCH_BODY (file with the request body), BENCH_KEY (virtual key),
-- BENCH_STATUS (the status every answer must have), BENCH_MARKS (strings every
-- answer body must contain, separated by '|'). wrk counts only sockets errors
-- and non-2xx/3xx; this counts answers with the wrong status or body, so a
-- run that got errors (or a 200 where 429 was expected) is reported invalid.
-- done() prints one line "BENCHJSON {...}" that bench/run.py parses.

local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")

local expected = tonumber(os.getenv("BENCH_STATUS"))
local marks = {}
for m in string.gmatch(os.getenv("BENCH_MARKS") or "", "[^|]+") do
  table.insert(marks, m)
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

ok, bad_status, bad_body, first_bad = 0, 0, 0, ""

function response(status, headers, body)
  if status ~= expected then
    bad_status = bad_status + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 300) end
    return
  end
  for _, m in ipairs(marks) do
    if not string.find(body or "", m, 1, true) then
      bad_body = bad_body + 1
      if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 300) end
      return
    end
  end
  ok = ok + 1
end

local function q(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local n_ok, n_status, n_body, bad = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    n_ok = n_ok + t:get("ok")
    n_status = n_status + t:get("bad_status")
    n_body = n_body + t:get("bad_body")
    if bad == "" then bad = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"bad_status":%d,"bad_body":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"first_bad":%s}\n',
    summary.requests, summary.duration, summary.bytes, n_ok, n_status, n_body,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, q(bad)))
end
