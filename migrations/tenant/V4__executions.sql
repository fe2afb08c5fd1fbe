-- Durable executions (docs/engine.md): every run of an integration, and a
-- checkpoint per finished step so that a restarted node resumes an
-- execution after its last committed step instead of running it again.

CREATE TABLE executions (
    -- UUIDv7: ids sort by creation time, so they are the paging cursor.
    id                uuid PRIMARY KEY,
    integration       text NOT NULL,
    -- The version it runs, fixed at creation: a later apply does not change
    -- what a queued or resumed execution does.
    version           integer NOT NULL,
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- {"kind": "manual", "body": <payload>}
    trigger           jsonb NOT NULL,
    output            jsonb,
    -- {"code", "message", "step"?}
    error             jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- Deleting an integration deletes its versions, and with them its history.
    FOREIGN KEY (integration, version) REFERENCES integration_versions (integration, version) ON DELETE CASCADE
);

-- Listing newest first, by integration or by state; the id is the time order.
CREATE INDEX executions_by_integration ON executions (integration, id DESC);
CREATE INDEX executions_by_state ON executions (state, id DESC);

-- One row per step that finished (its checkpoint). `path` names the step
-- inside nesting: `notify`, `route/branches[0]/notify`.
CREATE TABLE execution_steps (
    execution_id  uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    path          text NOT NULL,
    state         text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    attempt       integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    input         jsonb,
    output        jsonb,
    error         jsonb,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    PRIMARY KEY (execution_id, path)
);
