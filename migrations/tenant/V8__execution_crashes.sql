-- Poison pills (docs/engine.md, "Crashing executions"): the node that last
-- claimed a running execution, and how many times a node died while it
-- ran. A claim of a `running` execution whose claimer is gone counts one
-- crash; at `runtime.max_execution_crashes` the execution fails with
-- `node_crashed` instead of running again. Counted at claim time only,
-- so steps and checkpoints write nothing more.

ALTER TABLE executions
    ADD COLUMN claimed_by uuid,
    ADD COLUMN crashes    integer NOT NULL DEFAULT 0;
