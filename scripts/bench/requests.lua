-- wrk script for the benchmark's fixed-path scenarios. Arguments after "--":
--   method=GET  path=/products/{id}  ids=P0000,P0001,...  header=Name: value  body={...{id}...}
--   timed=1      time every answer here and count it by status (see below)
--   forwarded=1  send "X-Forwarded-For: 10.x.y.z", an address of this thread's own
--   polite=1     heed Retry-After: after an answer carrying it, wait that long before the next
-- "{id}" in the path and body takes the ids in turn (one id for every request when ids has
-- one). At the end, one line "BENCH_JSON {...}" carries the counts and latency percentiles,
-- and one "BENCH_FAILURES {...}" line the non-2xx answers by status, with the first body of
-- each status (so a run's errors can be told apart).
--
-- timed and forwarded are for runs with one connection per thread (wrk -tN -cN): a thread's
-- request() and response() calls then alternate for its one connection, so each answer is
-- paired with the request it answers, timed (LuaJIT's FFI clock, read where wrk reads its own)
-- and counted under its status, and the thread's address is its connection's. A "BENCH_TIMINGS
-- {status: {microseconds: count}}" line carries them all; a latency there is floored to four
-- significant digits (exact below 10 ms).
local method, template, body_template = "GET", "/", nil
local ids, headers = {}, {}
local counter = 0
local threads = {}
local timed, clock, started = false, nil, nil
failures, first_bodies = {}, {}
timings = {}      -- timed: "status microseconds" (floored) -> count
polite, wait_ms = false, 0
thread_number = 0 -- set by setup(): 1, 2, ... in the order wrk made the threads

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_number", #threads)
end

local function monotonic_clock()
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local now = ffi.new("bench_timespec")
  return function()
    ffi.C.clock_gettime(1, now)  -- CLOCK_MONOTONIC
    return tonumber(now.tv_sec) * 1e6 + tonumber(now.tv_nsec) / 1e3
  end
end

local function forwarded_for(n)
  return string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
                       n % 256)
end

function init(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^(%a+)=(.*)$")
    if key == "method" then method = value
    elseif key == "path" then template = value
    elseif key == "body" then body_template = value
    elseif key == "ids" then
      for id in value:gmatch("[^,]+") do ids[#ids + 1] = id end
    elseif key == "header" then
      local name, text = value:match("^([^:]+):%s*(.*)$")
      headers[name] = text
    elseif key == "timed" then timed = value == "1"
    elseif key == "forwarded" and value == "1" then
      headers["X-Forwarded-For"] = forwarded_for(thread_number)
    elseif key == "polite" and value == "1" then
      polite = true
    end
  end
  if #ids == 0 then ids[1] = "" end
  if body_template then headers["Content-Type"] = "application/json" end
  if timed then clock = monotonic_clock() end
end

function request()
  counter = counter + 1
  local id = ids[(counter % #ids) + 1]
  local path = (template:gsub("{id}", id))
  local body = nil
  if body_template then body = (body_template:gsub("{id}", id)) end
  local formatted = wrk.format(method, path, headers, body)
  -- A request whose connection broke unanswered is overwritten here: wrk counts it among
  -- the socket errors.
  if timed then started = clock() end
  return formatted
end

local function floored(us)
  if us < 10000 then return math.floor(us) end
  local step = 10 ^ (math.floor(math.log10(us)) - 3)
  return math.floor(us / step) * step
end

-- polite: the milliseconds to wait before the next request (wrk calls this before each one).
function delay()
  local wait = wait_ms
  wait_ms = 0
  return wait
end

function response(status, response_headers, body)
  if polite then
    local seconds = tonumber(response_headers["Retry-After"] or response_headers["retry-after"])
    if seconds then wait_ms = seconds * 1000 end
  end
  if timed and started then
    -- One flat table: wrk's thread:get() cannot copy nested ones.
    local key = string.format("%d %d", status, floored(clock() - started))
    started = nil
    timings[key] = (timings[key] or 0) + 1
  end
  if status >= 300 then
    failures[status] = (failures[status] or 0) + 1
    if not first_bodies[status] then first_bodies[status] = body:sub(1, 300) end
  end
end

local function quoted(text)
  return '"' .. text:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function report_failures()
  local counts, bodies, order = {}, {}, {}
  for _, thread in ipairs(threads) do
    local found, first = thread:get("failures"), thread:get("first_bodies")
    for status, count in pairs(found) do
      if not counts[status] then order[#order + 1] = status; counts[status] = 0 end
      counts[status] = counts[status] + count
      bodies[status] = bodies[status] or first[status]
    end
  end
  local parts = {}
  for _, status in ipairs(order) do
    parts[#parts + 1] = string.format('"%d": {"count": %d, "body": %s}', status,
                                      counts[status], quoted(bodies[status] or ""))
  end
  io.write("BENCH_FAILURES {" .. table.concat(parts, ", ") .. "}\n")
end

-- Returns the 2xx answers and all answers timed (nil when the load was not timed).
local function report_timings()
  local merged, any, ok, all = {}, false, 0, 0
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("timings")) do
      any = true
      merged[key] = (merged[key] or 0) + count
      all = all + count
      local status = tonumber(key:match("^%d+"))
      if status >= 200 and status < 300 then ok = ok + count end
    end
  end
  if not any then return nil end
  local by_status = {}
  for key, count in pairs(merged) do
    local status, us = key:match("^(%d+) (%d+)$")
    local parts = by_status[status] or {}
    by_status[status] = parts
    parts[#parts + 1] = string.format('"%s": %d', us, count)
  end
  local statuses = {}
  for status, parts in pairs(by_status) do
    statuses[#statuses + 1] = string.format('"%s": {%s}', status, table.concat(parts, ", "))
  end
  io.write("BENCH_TIMINGS {" .. table.concat(statuses, ", ") .. "}\n")
  return ok, all
end

-- The 2xx answers' p99 as estimated from wrk's latency histogram alone, were every other
-- answer faster than it: the histogram's quantile at (others + 0.99 * 2xx) / all. Reported
-- next to the measured one, as a check: wrk adds synthetic samples to its histogram for
-- answers slower than twice the mean interval (its coordinated-omission correction), which
-- such an estimate cannot tell from real ones.
local function report_estimate(latency, ok, all)
  if not ok or ok == 0 then return end
  local quantile = 100 * (all - ok + 0.99 * ok) / all
  io.write(string.format('BENCH_ESTIMATE {"quantile": %.4f, "p99_2xx_us": %d}\n', quantile,
                         latency:percentile(quantile)))
end

function done(summary, latency, requests)
  report_failures()
  report_estimate(latency, report_timings())
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
