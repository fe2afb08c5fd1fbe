//! What `tessera` prints.

pub mod client;
