-- The platform's audit trail: every change made by a platform owner
-- through the API or the console, and by an operator's command on the
-- database. Same shape and chain as each tenant's (tenant migration V9,
-- docs/security.md, "Audit trail").
CREATE TABLE platform.audit_records (
    seq           bigint PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor_kind    text NOT NULL,
    actor_id      text,
    actor_name    text NOT NULL,
    address       text,
    via           text NOT NULL,
    request_id    text,
    action        text NOT NULL,
    resource_kind text NOT NULL,
    resource_name text NOT NULL,
    detail        text NOT NULL,
    key_id        text NOT NULL,
    mac           text NOT NULL
);
CREATE INDEX audit_records_at ON platform.audit_records (at);
CREATE INDEX audit_records_resource ON platform.audit_records (resource_kind, resource_name);

CREATE TABLE platform.audit_chain (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL,
    mac text NOT NULL
);
INSERT INTO platform.audit_chain (seq, mac) VALUES (0, '');
