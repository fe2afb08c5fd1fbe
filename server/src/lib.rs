//! Tessera server node. See docs/architecture.md for the map.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod client;
pub mod commands;
pub mod committer;
pub mod config;
pub mod database;
pub mod dev;
pub mod egress;
pub mod error;
pub mod execution_store;
pub mod intake;
pub mod local_postgres;
pub mod notifications;
pub mod provisioning;
pub mod resources;
pub mod retention;
pub mod routes;
pub mod sealing;
pub mod startup;
pub mod telemetry;
pub mod tenancy;
pub mod trigger_store;
