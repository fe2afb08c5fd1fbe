-- Integrations and connections, as applied through POST /api/apply.

-- One row per integration; its definitions are in integration_versions.
CREATE TABLE integrations (
    name             text PRIMARY KEY,
    enabled          boolean NOT NULL,
    current_version  integer NOT NULL CHECK (current_version > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every definition an integration ever had, so a change can be inspected
-- and rolled back. Versions are immutable: a change (or a rollback) adds one.
CREATE TABLE integration_versions (
    integration  text NOT NULL REFERENCES integrations (name) ON DELETE CASCADE,
    version      integer NOT NULL CHECK (version > 0),
    -- The resource as JSON (apiVersion, kind, metadata, spec), defaults spelled out.
    definition   jsonb NOT NULL,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration, version)
);

CREATE FUNCTION integration_versions_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'integration versions are immutable: apply a new version instead';
END
$$;

CREATE TRIGGER integration_versions_are_immutable BEFORE UPDATE ON integration_versions
    FOR EACH ROW EXECUTE FUNCTION integration_versions_are_immutable();

-- Credentials for external systems. The whole resource (its secrets with
-- it) is sealed by the node's key ring and never stored in clear; kind and
-- description are kept beside it for listing.
CREATE TABLE connections (
    name         text PRIMARY KEY,
    kind         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    -- nonce || ciphertext, bound to the tenant and connection name
    secret       bytea NOT NULL,
    -- which key of the ring sealed `secret` (first 8 hex of its SHA-256)
    key_id       text NOT NULL,
    version      integer NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
