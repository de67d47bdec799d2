-- wrk script for the benchmark's fixed-path scenarios. Arguments after "--":
--   method=GET  path=/products/{id}  ids=P0000,P0001,...  header=Name: value  body={...{id}...}
-- "{id}" in the path and body takes the ids in turn (one id for every request when ids has
-- one). At the end, one line "BENCH_JSON {...}" carries the counts and latency percentiles,
-- and one "BENCH_FAILURES {...}" line the non-2xx answers by status, with the first body of
-- each status (so a run's errors can be told apart).
local method, template, body_template = "GET", "/", nil
local ids, headers = {}, {}
local counter = 0
local threads = {}
failures, first_bodies = {}, {}

function setup(thread)
  threads[#threads + 1] = thread
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
    end
  end
  if #ids == 0 then ids[1] = "" end
  if body_template then headers["Content-Type"] = "application/json" end
end

function request()
  counter = counter + 1
  local id = ids[(counter % #ids) + 1]
  local path = (template:gsub("{id}", id))
  local body = nil
  if body_template then body = (body_template:gsub("{id}", id)) end
  return wrk.format(method, path, headers, body)
end

function response(status, response_headers, body)
  if status >= 300 then
    failures[status] = (failures[status] or 0) + 1
    if not first_bodies[status] then first_bodies[status] = body:sub(1, 300) end
  end
end

local function quoted(text)
  return '"' .. text:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function report_failures()
  local parts = {}
  for _, thread in ipairs(threads) do
    local counts, bodies = thread:get("failures"), thread:get("first_bodies")
    for status, count in pairs(counts) do
      parts[#parts + 1] = string.format('"%d": {"count": %d, "body": %s}', status, count,
                                        quoted(bodies[status] or ""))
    end
  end
  io.write("BENCH_FAILURES {" .. table.concat(parts, ", ") .. "}\n")
end

function done(summary, latency, requests)
  report_failures()
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
