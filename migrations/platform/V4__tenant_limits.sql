-- Limits per tenant set by the platform owner. Only the limits overridden
-- are stored (a JSON object of limit name → whole number); a tenant's
-- effective limits are the node's configured defaults with these on top.

CREATE TABLE platform.tenant_limits (
    tenant_id   uuid PRIMARY KEY REFERENCES platform.tenants (id) ON DELETE CASCADE,
    overrides   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(overrides) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
