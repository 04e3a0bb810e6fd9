-- wrk script: POST a JSON body read from the environment.
--   BENCH_BODY   the request body
--   BENCH_AUTH   the Authorization header value
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

-- Count non-2xx answers so a broken setup cannot pass for a fast one.
local bad = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH_NON2XX=%d\n", summary.errors.status))
end
