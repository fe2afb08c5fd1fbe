-- Execution controls (docs/engine.md): idempotency keys on triggers, the
-- retry counter, and the index the retention sweeper deletes by.

-- A trigger's `Idempotency-Key`: a repeated key returns the execution it
-- created first instead of creating another (unique per integration).
ALTER TABLE executions ADD COLUMN idempotency_key text
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255);
CREATE UNIQUE INDEX executions_idempotency_key ON executions (integration, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- How often a failed execution was sent back to `queued` by a retry.
ALTER TABLE executions ADD COLUMN retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0);

-- Retention deletes finished executions by age, in small batches.
CREATE INDEX executions_finished_by_age ON executions (integration, created_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
