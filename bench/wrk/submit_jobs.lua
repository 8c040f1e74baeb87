-- Scenario E, part 1: submit exactly BENCH_JOBS async jobs (POST BENCH_PATH) from one
-- thread, write each job id to BENCH_IDS, then stop. Any non-202 answer is an error.
local quota = tonumber(os.getenv("BENCH_JOBS") or "5000")
local body = os.getenv("BENCH_BODY") or '{"prompt": "a lighthouse at dusk"}'
local path = os.getenv("BENCH_PATH") or "/v1/jobs/bench-image"
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or ""),
}
-- wrk calls request() once on thread 0 before sending anything (script_verify_request, to
-- count the requests a call returns), so the count starts one below zero; this script runs
-- with one thread.
local issued, answered, failed, finished = -1, 0, 0, false
local ids, rejects

init = function(args)
  ids = io.open(os.getenv("BENCH_IDS"), "w")
  rejects = io.open(os.getenv("BENCH_IDS") .. ".rejected", "w")
end

request = function()
  issued = issued + 1
  if issued > quota then
    -- Spare connections idle on a cheap request until the last answers are in.
    return wrk.format("GET", "/healthz", headers)
  end
  return wrk.format("POST", path, headers, body)
end

response = function(status, resp_headers, resp_body)
  if status == 202 or status == 200 then
    local id = resp_body:match('"job_id":"([^"]+)"')
    if id then
      answered = answered + 1
      ids:write(id, "\n")
    end
  else
    -- Kept for the report: what the gateway answered instead of a job.
    failed = failed + 1
    answered = answered + 1
    rejects:write(status, " ", string.sub(resp_body or "", 1, 300), "\n")
    rejects:flush()
  end
  if answered >= quota and not finished then
    finished = true
    ids:close()
    io.open(os.getenv("BENCH_DONE"), "w"):close()
    wrk.thread:stop()
  end
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
