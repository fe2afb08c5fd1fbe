-- Schedule and queue triggers (docs/engine.md).

-- One row per schedule trigger of an enabled integration: when it fires
-- next. A tick fires by moving next_at from the value a worker read to the
-- following one (compare-and-set) in the transaction that queues its
-- execution, so a tick runs once however many workers race for it.
CREATE TABLE schedules (
    integration    text NOT NULL REFERENCES integrations (name) ON DELETE CASCADE,
    -- The trigger's place in spec.triggers.
    trigger_index  integer NOT NULL CHECK (trigger_index >= 0),
    -- The schedule as written (cron and time zone, or interval): a changed
    -- schedule starts afresh instead of keeping the old next time.
    spec           text NOT NULL,
    next_at        timestamptz NOT NULL,
    PRIMARY KEY (integration, trigger_index)
);

-- The message ids of queue messages already queued as executions, so a
-- redelivery (the ack was lost) does not queue a second one. Goes with its
-- execution.
CREATE TABLE queue_messages (
    integration   text NOT NULL,
    message_id    text NOT NULL,
    execution_id  uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    PRIMARY KEY (integration, message_id)
);
