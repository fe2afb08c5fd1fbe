-- Calls of the tenant's managed APIs per minute, route and consumer
-- (docs/api-management.md, "Analytics"): each node counts in memory and
-- adds its counts here every second. Kept 35 days.
CREATE TABLE api_call_stats (
    api      text NOT NULL,
    -- `POST /quotes/{sku}`, or `unmatched`.
    route    text NOT NULL,
    -- The consumer's name; '' for calls without one.
    consumer text NOT NULL DEFAULT '',
    minute   timestamptz NOT NULL,
    calls    bigint NOT NULL,
    errors   bigint NOT NULL,
    -- Durations counted in fixed buckets (`analytics::LATENCY_BOUNDS_MS`).
    latency  bigint[] NOT NULL,
    PRIMARY KEY (api, minute, route, consumer)
);
CREATE INDEX api_call_stats_minute ON api_call_stats (minute);
