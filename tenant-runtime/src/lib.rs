//! Tessera's tenant runtime: on each node, one supervised worker task per
//! active tenant assigned to that node, which runs that tenant's
//! executions.
//!
//! Owns the lifecycle of tenant workers (start, stop, restart after a panic)
//! and the running of executions ([`execution`]), and nothing about where
//! the list of tenants comes from or how executions are stored: the server
//! hands the supervisor the desired set and an [`ExecutionStore`].
//! [`definition`] holds the declarative format integrations are written in,
//! [`expression`] the jq expressions and templates inside them.

pub mod amqp;
pub mod definition;
pub mod egress;
pub mod execution;
pub mod expression;
pub mod limits;
mod supervisor;
pub mod triggers;
mod worker;

/// Unit tests count allocations the way the `tessera` binary does, so the
/// memory budget of evaluations is tested for real.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: expression::CountingAllocator<std::alloc::System> = expression::CountingAllocator(std::alloc::System);

pub use execution::{Connections, Engine, ExecutionStore, Limits, OpenError, OpenFuture};
pub use limits::{LimitOverrides, TenantLimits};
pub use supervisor::{Forwarder, HeldTenant, Supervisor, WorkerStatus};
pub use triggers::TriggerStore;
pub use worker::{RemoteCommand, TenantSpec, WorkerCommand};
