-- The tenants that have work: a row says a worker must look at the tenant
-- (it may have unfinished executions, or enabled schedule or queue
-- triggers). Whatever stores new work adds the row in the same transaction,
-- after its write; a tenant's worker removes it only once it found no work,
-- under a lock that waits for those writers. A node starts the workers of
-- its tenants listed here, and the others only when something comes for
-- them, so start-up and idle cost follow the tenants with work.

CREATE TABLE platform.tenant_work (
    tenant_id  uuid PRIMARY KEY REFERENCES platform.tenants (id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT now()
);

-- Tenants from before this table may have work: each worker looks once.
INSERT INTO platform.tenant_work (tenant_id) SELECT id FROM platform.tenants;
