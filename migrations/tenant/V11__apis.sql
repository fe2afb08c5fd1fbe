-- Managed APIs (`kind: Api`, docs/api-management.md): each served at
-- /apis/<base_path>/<version>/...; two versions of one API are two rows.
CREATE TABLE apis (
    name       text PRIMARY KEY,
    base_path  text NOT NULL,
    version    text NOT NULL,
    -- The resource as applied.
    definition jsonb NOT NULL,
    -- Counts the applies that changed it.
    revision   integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (base_path, version)
);
