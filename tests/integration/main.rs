//! One test binary for the whole suite (one link, shared harness in src/).

mod auth;
mod bad_input;
mod cli;
mod cli_client;
mod committer;
mod directory;
mod executions;
mod concurrency;
mod hosts;
mod integrations;
mod isolation;
mod migrations;
mod noisy;
mod operations;
mod provisioning;
mod roles;
mod smoke;
mod webhooks;
