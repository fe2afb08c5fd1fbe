-- Egress rules per tenant (docs/security.md, "Egress"): what a tenant's
-- steps, triggers and connection tests may connect to, beyond the
-- platform-wide policy of the configuration. Kept by the platform owner
-- (API and CLI); a change is announced with NOTIFY tessera_egress_changes
-- (payload: the tenant id), so every node reads the tenant's rules again.

CREATE TABLE platform.tenant_egress_rules (
    tenant_id   uuid NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    -- deny wins over allow
    action      text NOT NULL CHECK (action IN ('allow', 'deny')),
    -- a CIDR, an address or a host pattern, with an optional :port (parsed by the server)
    rule        text NOT NULL CHECK (length(rule) BETWEEN 1 AND 300),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, action, rule)
);
