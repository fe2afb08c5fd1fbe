//! Host names and tenant slugs: which part of the platform a request's Host
//! names, and the only tenant-supplied text that becomes a SQL identifier.
//!
//! Pure functions with no I/O, shared by the node (`tessera-server`) and the
//! load balancer (`tessera-lb`) so both accept and refuse exactly the same
//! hosts.

mod host;
mod slug;

pub use host::{classify, HostError, HostTarget};
pub use slug::{SchemaName, SlugError, TenantSlug};
