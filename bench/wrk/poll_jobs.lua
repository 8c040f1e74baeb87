-- Scenario E, part 2: poll GET /v1/jobs/{id} for every id in BENCH_IDS, round robin,
-- dropping each job from the rotation once it is terminal; stop when none is left.
-- Terminal states are counted into BENCH_RESULT's "jobs" line by done().
local headers = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "") }
local pending, order, cursor, left = {}, {}, 0, 0
local terminal = { succeeded = true, failed = true, canceled = true, expired = true }

init = function(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if line ~= "" then
      order[#order + 1] = line
      pending[line] = true
      left = left + 1
    end
  end
  succeeded, failed_jobs = 0, 0
end

request = function()
  -- The next job still pending; finished ones are skipped (and compacted now and then).
  for _ = 1, #order do
    cursor = cursor % #order + 1
    local id = order[cursor]
    if pending[id] then
      return wrk.format("GET", "/v1/jobs/" .. id, headers)
    end
  end
  return wrk.format("GET", "/healthz", headers)
end

response = function(status, resp_headers, resp_body)
  local id = resp_body:match('"id":"([^"]+)"')
  local state = resp_body:match('"status":"([^"]+)"')
  if id and pending[id] and state and terminal[state] then
    pending[id] = nil
    left = left - 1
    if state == "succeeded" then succeeded = succeeded + 1 else failed_jobs = failed_jobs + 1 end
    if left == 0 then
      local out = io.open(os.getenv("BENCH_DONE"), "w")
      out:write(string.format('{"succeeded": %d, "failed": %d}\n', succeeded, failed_jobs))
      out:close()
      wrk.thread:stop()
    end
  end
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
