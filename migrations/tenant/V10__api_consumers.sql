-- API management, first part (docs/api-management.md): the plans a tenant
-- offers its APIs' consumers, the consumers with their keys, and the
-- cluster-wide state of each consumer's limits.

CREATE TABLE api_plans (
    name            text PRIMARY KEY,
    description     text NOT NULL DEFAULT '',
    -- A token bucket: refilled at this rate, holding at most `burst`.
    rate_per_second double precision NOT NULL CHECK (rate_per_second > 0),
    burst           integer NOT NULL CHECK (burst >= 1),
    -- Calls per UTC day or month; none: no quota.
    quota           bigint CHECK (quota > 0),
    quota_period    text CHECK (quota_period IN ('day', 'month')),
    CHECK ((quota IS NULL) = (quota_period IS NULL)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_consumers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    -- A plan in use cannot be deleted.
    plan        text NOT NULL REFERENCES api_plans (name),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_consumer_keys (
    id           uuid PRIMARY KEY,
    consumer_id  uuid NOT NULL REFERENCES api_consumers (id) ON DELETE CASCADE,
    -- The first characters of the key, kept in clear to tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_consumer_keys_consumer ON api_consumer_keys (consumer_id);

-- Where every node of the cluster admits a consumer's calls: its token
-- bucket (tokens as of `refilled_at`) and its calls in the current quota
-- window. One row per consumer, updated under its row lock, so the limits
-- hold across nodes exactly.
CREATE TABLE api_consumer_usage (
    consumer_id  uuid PRIMARY KEY REFERENCES api_consumers (id) ON DELETE CASCADE,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL,
    window_start timestamptz,
    used         bigint NOT NULL DEFAULT 0
);
