//! The `tessera` command line as a client of a tenant's REST API, the way
//! kubectl is a client of Kubernetes: the commands (`commands`), profiles
//! (`profile`), the HTTP calls (`api`), and the files given to `apply` and
//! payloads given to `run` (`source`); what is printed is
//! `render::client`'s.
//!
//! This module never touches the database and never prints a credential:
//! tokens and API keys live only in the profile file (mode 0600) and in the
//! `Authorization` header.

pub mod api;
pub mod commands;
pub mod profile;
pub mod source;

pub use api::{ApiClient, CallError, ExecutionFilter};
pub use profile::{Credential, Profile, ProfileFile};
