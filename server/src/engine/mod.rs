//! The runtime's stores, implemented over the tenants' schemas: what
//! `tessera_runtime` asks of PostgreSQL goes through here and nowhere else.
//! `executions` (the `ExecutionStore`: claim, checkpoint, finish, fenced by
//! the tenant's lease; and the connections of steps), `committer` (the same
//! store with its writes committed in batches, one transaction per lane) and `triggers`
//! (the `TriggerStore`: schedules, ticks and queue messages), `endings`
//! (waiters told when an execution's end is committed here). New
//! executions are started by `crate::starts`, which these call.

pub mod committer;
pub mod endings;
pub mod executions;
pub mod triggers;
