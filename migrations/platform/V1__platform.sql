-- The platform schema: clusters, tenants and platform owners.
-- Every name is schema-qualified: pooled sessions run with a search_path
-- that holds no tables.

CREATE TABLE platform.clusters (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{0,39}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A single-cluster install places every tenant here.
INSERT INTO platform.clusters (id, name) VALUES ('local', 'Local cluster');

CREATE TABLE platform.tenants (
    id              uuid PRIMARY KEY,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{1,39}$'),
    schema_name     text NOT NULL UNIQUE CHECK (schema_name ~ '^t_[a-z0-9_]{1,61}$'),
    name            text NOT NULL,
    cluster_id      text NOT NULL DEFAULT 'local' REFERENCES platform.clusters (id),
    status          text NOT NULL CHECK (status IN ('active', 'suspended')),
    -- Highest tenant migration applied to schema_name; lets `migrate` skip
    -- up-to-date tenants with one indexed query.
    schema_version  integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    suspended_at    timestamptz
);
CREATE INDEX tenants_schema_version_idx ON platform.tenants (schema_version);

CREATE TABLE platform.owners (
    id             uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- What was deleted, by whom, and where its export went.
CREATE TABLE platform.tenant_deletions (
    tenant_id    uuid NOT NULL,
    slug         text NOT NULL,
    export_path  text NOT NULL,
    deleted_by   text NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now()
);
