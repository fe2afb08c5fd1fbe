-- The platform directory (docs/architecture.md, "Clusters and the load
-- balancer"): every cluster with its kind, owning partner, database and
-- broker; each tenant's placement (platform.tenants.cluster_id); and the
-- domains tenants bring. The load balancer reads these tables and listens
-- for their changes, so each change announces itself here, whoever makes it.

ALTER TABLE platform.clusters
    ADD COLUMN kind          text NOT NULL DEFAULT 'shared' CHECK (kind IN ('shared', 'dedicated')),
    ADD COLUMN partner       text CHECK (partner ~ '^[a-z][a-z0-9-]{0,39}$'),
    -- Where the cluster's tenant schemas live; NULL: this database.
    ADD COLUMN database_url  text,
    -- The cluster's RabbitMQ, for its nodes' worker commands; NULL: none.
    ADD COLUMN amqp_url      text,
    -- draining: no new tenant is placed on it.
    ADD COLUMN state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
    ADD CONSTRAINT clusters_dedicated_have_a_partner CHECK (kind = 'shared' OR partner IS NOT NULL);

CREATE INDEX tenants_cluster_idx ON platform.tenants (cluster_id);

-- A domain a tenant serves its hooks and APIs on, besides its subdomain.
-- It routes only once verified_at is set: the tenant proved it controls the
-- domain's DNS (docs/operations.md, "Custom domains").
CREATE TABLE platform.tenant_domains (
    domain       text PRIMARY KEY CHECK (length(domain) <= 253
                     AND domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'),
    tenant_id    uuid NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    token        text NOT NULL,
    verified_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant_idx ON platform.tenant_domains (tenant_id);

CREATE FUNCTION platform.announce_directory_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_directory_changes', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER clusters_announce AFTER INSERT OR UPDATE OR DELETE ON platform.clusters
    FOR EACH STATEMENT EXECUTE FUNCTION platform.announce_directory_change();
CREATE TRIGGER tenant_domains_announce AFTER INSERT OR UPDATE OR DELETE ON platform.tenant_domains
    FOR EACH STATEMENT EXECUTE FUNCTION platform.announce_directory_change();
CREATE TRIGGER tenants_announce AFTER INSERT OR DELETE OR UPDATE OF slug, cluster_id, status ON platform.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION platform.announce_directory_change();

-- A node that joins, leaves or changes state (heartbeats are not changes).
CREATE FUNCTION platform.announce_node_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_node_changes', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER nodes_announce AFTER INSERT OR DELETE OR UPDATE OF state, address ON platform.nodes
    FOR EACH STATEMENT EXECUTE FUNCTION platform.announce_node_change();

-- A lease that changes hands (renewals are not changes): '<tenant> <node>',
-- the node empty when released.
CREATE FUNCTION platform.announce_lease_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_lease_changes', NEW.tenant_id::text || ' ' || coalesce(NEW.node_id::text, ''));
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_leases_announce_new AFTER INSERT ON platform.tenant_leases
    FOR EACH ROW EXECUTE FUNCTION platform.announce_lease_change();
CREATE TRIGGER tenant_leases_announce_moved AFTER UPDATE OF node_id ON platform.tenant_leases
    FOR EACH ROW WHEN (OLD.node_id IS DISTINCT FROM NEW.node_id) EXECUTE FUNCTION platform.announce_lease_change();
