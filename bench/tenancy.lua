-- wrk script for bench/tenancy.sh: one GET per request, rotating over every
-- tenant in the tenants file (lines "slug schema token").
--
--   wrk ... -s tenancy.lua http://127.0.0.1:PORT -- tenant|baseline FILE PORT
--
-- tenant:   GET /api/variables/bench, Host <slug>.localhost:PORT
-- baseline: GET /bench/baseline/<schema>/variables/bench, Host localhost:PORT
-- Both carry the tenant owner's token. done() prints one WRK_JSON line.

local requests_pool = {}
local next_index = 0

function init(args)
   local mode, file, port = args[1], args[2], args[3]
   if (mode ~= "tenant" and mode ~= "baseline") or not file or not port then
      error("usage: -- tenant|baseline TENANTS_FILE PORT")
   end
   for line in io.lines(file) do
      local slug, schema, token = line:match("^(%S+) (%S+) (%S+)$")
      if slug then
         local path, host
         if mode == "tenant" then
            path, host = "/api/variables/bench", slug .. ".localhost:" .. port
         else
            path, host = "/bench/baseline/" .. schema .. "/variables/bench", "localhost:" .. port
         end
         requests_pool[#requests_pool + 1] =
            wrk.format("GET", path, { ["Host"] = host, ["Authorization"] = "Bearer " .. token })
      end
   end
   if #requests_pool == 0 then
      error("no tenants in " .. file)
   end
   -- Each thread starts at its own offset so threads do not move in lockstep.
   next_index = math.random(#requests_pool) - 1
end

function request()
   next_index = next_index % #requests_pool + 1
   return requests_pool[next_index]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"rps":%.2f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
      '"p99_ms":%.3f,"max_ms":%.3f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
      '"errors_status":%d,"errors_timeout":%d}\n',
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
