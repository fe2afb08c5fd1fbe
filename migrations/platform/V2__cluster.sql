-- Clustering (docs/clustering.md): the nodes of each cluster and which node
-- owns each tenant's worker. Times are the database's clock (now()), so
-- nodes never compare their own clocks with each other's.

CREATE TABLE platform.nodes (
    id            uuid PRIMARY KEY,
    cluster_id    text NOT NULL REFERENCES platform.clusters (id),
    address       text NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    -- active: takes tenants; draining: hands its tenants over before it
    -- stops; stopped: left the cluster cleanly.
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'stopped'))
);
CREATE INDEX nodes_live_idx ON platform.nodes (cluster_id, heartbeat_at);

-- One row per tenant that has ever had an owner. A lease is held while
-- `expires_at` is in the future; `epoch` grows by one at every change of
-- owner, and every write a worker makes checks it (fencing), so a node
-- that lost its lease without knowing cannot write over the new owner.
CREATE TABLE platform.tenant_leases (
    tenant_id    uuid PRIMARY KEY REFERENCES platform.tenants (id) ON DELETE CASCADE,
    node_id      uuid REFERENCES platform.nodes (id) ON DELETE SET NULL,
    epoch        bigint NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at  timestamptz
);
CREATE INDEX tenant_leases_node_idx ON platform.tenant_leases (node_id);
