-- `call` steps (docs/engine.md): a child execution knows the parent
-- execution and the step (and attempt of it) that started it. A parent
-- asking again for the same step and attempt (after a restart) gets the
-- same child: the unique index makes the creation idempotent.

ALTER TABLE executions
    ADD COLUMN parent_id      uuid REFERENCES executions (id) ON DELETE CASCADE,
    ADD COLUMN parent_step    text,
    ADD COLUMN parent_attempt integer,
    ADD CONSTRAINT executions_parent_complete
        CHECK ((parent_id IS NULL) = (parent_step IS NULL) AND (parent_id IS NULL) = (parent_attempt IS NULL));

CREATE UNIQUE INDEX executions_by_parent ON executions (parent_id, parent_step, parent_attempt)
    WHERE parent_id IS NOT NULL;
