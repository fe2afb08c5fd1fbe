//! The definitions of integration versions this node ran lately, parsed.
//!
//! Why: a version is immutable once applied, and reading its stored JSON
//! into an [`Integration`] on every execution was a visible share of a
//! short execution's CPU. Keyed by tenant, integration and version, so a
//! tenant only ever gets its own versions back. Bounded, and idle entries
//! expire, like the expression cache.

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::Failure;
use crate::definition::{Integration, Resource};

const CAPACITY: u64 = 4096;
const IDLE: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Versions {
    parsed: Cache<(Uuid, String, i32), Arc<Integration>>,
}

impl Default for Versions {
    fn default() -> Self {
        Self { parsed: Cache::builder().max_capacity(CAPACITY).time_to_idle(IDLE).build() }
    }
}

impl Versions {
    /// Version `version` of `tenant`'s `integration`, parsed from `stored`
    /// unless it was parsed before.
    pub fn get(&self, tenant: Uuid, integration: &str, version: i32, stored: &Value) -> Result<Arc<Integration>, Failure> {
        let key = (tenant, integration.to_string(), version);
        if let Some(parsed) = self.parsed.get(&key) {
            return Ok(parsed);
        }
        let parsed = Arc::new(parse(stored)?);
        self.parsed.insert(key, parsed.clone());
        Ok(parsed)
    }
}

fn parse(stored: &Value) -> Result<Integration, Failure> {
    match Resource::deserialize(stored) {
        Ok(Resource::Integration(integration)) => Ok(integration),
        Ok(_) => Err(Failure::new("invalid_definition", "the stored version is not an integration")),
        Err(e) => Err(Failure::new("invalid_definition", format!("the stored version cannot be read: {e}"))),
    }
}
