//! The `tessera` command line as a client of a tenant's REST API, the way
//! kubectl is a client of Kubernetes: profiles (`profile`), the HTTP calls
//! (`api`), the files given to `apply` and payloads given to `run`
//! (`source`) and what is printed
//! (`render`).
//!
//! This module never touches the database and never prints a credential:
//! tokens and API keys live only in the profile file (mode 0600) and in the
//! `Authorization` header. `commands.rs` wires it to the CLI.

pub mod api;
pub mod profile;
pub mod source;

pub use api::{ApiClient, ApiError, ExecutionFilter};
pub use profile::{Credential, Profile, ProfileFile};
