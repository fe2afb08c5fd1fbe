//! Logging for the binary: `log.level` (an env-filter directive, `RUST_LOG`
//! wins when set) and `log.json`.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Install the global subscriber; a second call (tests) does nothing.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
}
