-- wrk script for bench/scaling.sh: POST a small JSON body to one webhook,
-- rotating over tenants' hosts on one node.
-- Arguments (after --): port slugs path [pause_ms]. slugs: separated by
-- commas. pause_ms: each connection waits this long before each request,
-- which caps the rate at connections * 1000 / pause_ms requests/s.
local counter = 0
local hosts = {}
local path = "/"
local pause = 0

function init(args)
    for slug in string.gmatch(args[2], "[^,]+") do hosts[#hosts + 1] = slug .. ".localhost:" .. args[1] end
    path = args[3]
    pause = tonumber(args[4] or "0")
    -- Each thread starts at its own offset so threads do not move in lockstep.
    counter = math.random(#hosts) - 1
end

function request()
    counter = counter + 1
    local headers = { ["Host"] = hosts[(counter % #hosts) + 1], ["Content-Type"] = "application/json" }
    return wrk.format("POST", path, headers, string.format('{"order": %d, "total_cents": %d}', counter, counter * 7))
end

function delay()
    return pause
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests": %d, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
        '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
        summary.requests, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
