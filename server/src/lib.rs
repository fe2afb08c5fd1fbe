//! Tessera server node. See docs/architecture.md for the map.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cluster;
pub mod config;
pub mod database;
pub mod dev;
pub mod egress;
pub mod engine;
pub mod gateway;
pub mod error;
pub mod limits;
pub mod local_postgres;
pub mod metrics;
pub mod notifications;
pub mod platform;
pub mod provisioning;
pub mod resources;
pub mod retention;
pub mod routes;
pub mod sealing;
pub mod starts;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenancy;

/// The configuration of the `hostile_*` property tests: `PROPTEST_CASES`
/// cases (default 64, so CI stays fast; the long run in bench/ sets more).
#[cfg(test)]
pub(crate) fn hostile_config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() }
}
