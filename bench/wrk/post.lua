-- POST one JSON body (BENCH_BODY) with an optional bearer key (BENCH_KEY); the summary
-- goes to BENCH_RESULT (report.lua).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"prompt": "a lighthouse at dusk"}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
