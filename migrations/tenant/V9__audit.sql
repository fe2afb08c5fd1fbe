-- The tenant's audit trail (docs/security.md, "Audit trail"): every change
-- made through the API, the CLI or the panel, recorded in the transaction
-- of the change itself. Each record carries an HMAC over its fields and the
-- previous record's HMAC, with a key kept outside the database, so a record
-- edited, inserted or removed in the middle breaks the chain.
--
-- `detail` is the JSON text exactly as it was signed (jsonb would reorder
-- and renormalise it).
CREATE TABLE audit_records (
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
CREATE INDEX audit_records_at ON audit_records (at);
CREATE INDEX audit_records_resource ON audit_records (resource_kind, resource_name);

-- The chain's head: the last record's number and HMAC. Its row is the lock
-- that puts concurrent changes' records in one order.
CREATE TABLE audit_chain (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL,
    mac text NOT NULL
);
INSERT INTO audit_chain (seq, mac) VALUES (0, '');
