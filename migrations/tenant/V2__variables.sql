-- Tenant variables: named JSON values that integrations read.

CREATE TABLE variables (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'),
    value        jsonb NOT NULL,
    description  text NOT NULL DEFAULT '',
    updated_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
