-- wrk script: count responses by status in every thread and print them as JSON at the end.
-- With script arguments (wrk ... -s status.lua URL -- /a /b /c) requests cycle through those paths.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  paths = args
  counter = 0
  if #paths == 0 then
    request = nil  -- static requests: wrk skips the per-request Lua call
  end
end

function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("ERRORS {\"connect\": %d, \"read\": %d, \"write\": %d, \"timeout\": %d}\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
