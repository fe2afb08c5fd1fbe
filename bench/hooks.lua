-- wrk script: POST a small JSON body to one webhook on a tenant's host.
-- Arguments (after --): host paths [pause_ms]. paths: one path, or several
-- separated by commas (requests rotate over them). pause_ms: each
-- connection waits this long before each request, which caps the rate at
-- connections * 1000 / pause_ms requests/s (0 or absent: no pause).
local counter = 0
local paths = {}
local pause = 0

function init(args)
    wrk.method = "POST"
    for p in string.gmatch(args[2], "[^,]+") do paths[#paths + 1] = p end
    wrk.headers["Host"] = args[1]
    pause = tonumber(args[3] or "0")
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    counter = counter + 1
    return wrk.format(nil, paths[(counter % #paths) + 1], nil, string.format('{"order": %d, "total_cents": %d}', counter, counter * 7))
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
