-- wrk script: POST a small JSON body to tenants' webhooks.
-- Arguments (after --): hosts paths [pause_ms]. hosts and paths: one, or
-- several separated by commas; requests rotate over both (a host per
-- tenant spreads the load over tenants, several paths over integrations).
-- hosts may also be @<file>: one host a line (a list too long for one
-- command-line argument, e.g. 10,000 tenants' hosts).
-- pause_ms: each connection waits this long before each request, which
-- caps the rate at connections * 1000 / pause_ms requests/s (0 or absent:
-- no pause).
local counter = 0
local hosts = {}
local paths = {}
local pause = 0

local function list(arg)
    local items = {}
    for item in string.gmatch(arg, "[^,]+") do items[#items + 1] = item end
    return items
end

local function lines(path)
    local items = {}
    for line in io.lines(path) do
        if line ~= "" then items[#items + 1] = line end
    end
    return items
end

function init(args)
    if string.sub(args[1], 1, 1) == "@" then
        hosts = lines(string.sub(args[1], 2))
    else
        hosts = list(args[1])
    end
    paths = list(args[2])
    pause = tonumber(args[3] or "0")
    -- Each thread starts at its own offset so threads do not move in lockstep.
    counter = math.random(#hosts * #paths) - 1
end

function request()
    counter = counter + 1
    local headers = {}
    -- The command line's -H headers (a consumer's key, say), then ours.
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Host"] = hosts[(counter % #hosts) + 1]
    headers["Content-Type"] = "application/json"
    local body = string.format('{"order": %d, "total_cents": %d}', counter, counter * 7)
    return wrk.format("POST", paths[(counter % #paths) + 1], headers, body)
end

function delay()
    return pause
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
        '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
