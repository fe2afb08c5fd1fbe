//! Tessera's tenant runtime: on each node, one supervised worker task per
//! active tenant assigned to that node.
//!
//! Owns the lifecycle of tenant workers (start, stop, restart after a panic)
//! and nothing about where the list of tenants comes from: the server hands
//! the supervisor the desired set and the supervisor converges on it. The
//! integration engine (triggers, executions) will live inside each worker;
//! [`definition`] holds the declarative format integrations are written in,
//! [`expression`] the jq expressions and templates inside them.

pub mod definition;
pub mod expression;
mod supervisor;
mod worker;

pub use supervisor::{Supervisor, WorkerStatus};
pub use worker::{TenantSpec, WorkerCommand};
