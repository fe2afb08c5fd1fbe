-- Moving a tenant between clusters (docs/clustering.md, "Moving a tenant").
--
-- While `paused_until` is in the future the tenant's nodes answer its
-- requests with 503 and Retry-After, no node takes its lease, and its
-- owner hands it over as soon as its running executions finish. A pause
-- ends by itself: a mover that dies cannot leave the tenant paused.
ALTER TABLE platform.tenants ADD COLUMN paused_until timestamptz;

DROP TRIGGER tenants_announce ON platform.tenants;
CREATE TRIGGER tenants_announce AFTER INSERT OR DELETE OR UPDATE OF slug, cluster_id, status, paused_until ON platform.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION platform.announce_directory_change();

-- Every move, as the directory records it. `switching` is the point of no
-- return: the source's copy is retired and a move found in that state is
-- finished, never undone, by the next `tessera tenant move`.
CREATE TABLE platform.tenant_moves (
    id            uuid PRIMARY KEY,
    -- No foreign key: the record outlives a tenant deleted later.
    tenant_id     uuid NOT NULL,
    slug          text NOT NULL,
    from_cluster  text NOT NULL,
    to_cluster    text NOT NULL,
    state         text NOT NULL CHECK (state IN ('copying', 'switching', 'done', 'failed')),
    -- The source schema's name once retired (renamed) at the switch.
    retired_schema text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    rows_copied   bigint NOT NULL DEFAULT 0,
    paused_ms     bigint,
    export_path   text,
    error         text
);
CREATE INDEX tenant_moves_tenant_idx ON platform.tenant_moves (tenant_id, started_at DESC);
