//! One test binary for the whole suite (one link, shared harness in src/).

mod auth;
mod bad_input;
mod cli;
mod cli_client;
mod cluster;
mod controls;
mod committer;
mod directory;
mod examples;
mod executions;
mod flow;
mod concurrency;
mod hosts;
mod integrations;
mod isolation;
mod migrations;
mod noisy;
mod operations;
mod provisioning;
mod roles;
mod rotation;
mod smoke;
mod triggers;
mod steps_io;
mod webhooks;
