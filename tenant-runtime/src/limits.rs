//! Limits per tenant: what one tenant may use of what all tenants share.
//!
//! [`TenantLimits`] holds every limit, always set; [`LimitOverrides`] the
//! same fields, each optional: the node's configuration holds one (the
//! defaults), and the platform owner may store one per tenant. A tenant's
//! effective limits are the built-in defaults, then the configured ones,
//! then its own ([`TenantLimits::with`]). The server checks what it
//! receives (request bodies, new executions); the runtime the rest.

use serde::{Deserialize, Serialize};

/// One limit broken: its stable code (the error code of what it refused)
/// and a message naming the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitExceeded {
    pub code: &'static str,
    pub message: String,
}

impl LimitExceeded {
    /// `what` is `size`, over `limit` (named by its key) of `max`.
    pub fn new(code: &'static str, what: &str, size: usize, limit: &str, max: usize) -> Self {
        Self { code, message: format!("{what} is {size}, over the tenant's limit `{limit}` of {max}") }
    }
}

/// A value that is not a valid setting of a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("there is no limit `{name}`; the limits are: {}", LIMIT_NAMES.join(", "))]
    Unknown { name: String },
    #[error("`{name}` must be a whole number from {min} to {max}")]
    OutOfRange { name: &'static str, min: usize, max: usize },
}

/// Every limit: its field, its range, its built-in default, and what it bounds.
macro_rules! limits {
    ($($(#[doc = $doc:literal])* $field:ident: $min:expr, $max:expr, $default:expr;)*) => {
        /// A tenant's limits, every one set.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct TenantLimits {
            $($(#[doc = $doc])* pub $field: usize,)*
        }

        impl Default for TenantLimits {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        /// Some limits set, the rest left to what is below (the defaults).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct LimitOverrides {
            $(#[serde(skip_serializing_if = "Option::is_none")] pub $field: Option<usize>,)*
        }

        /// Every limit's name, as in the configuration, the API and the CLI.
        pub const LIMIT_NAMES: &[&str] = &[$(stringify!($field)),*];

        impl TenantLimits {
            /// These limits with `overrides` put over them.
            pub fn with(&self, overrides: &LimitOverrides) -> Self {
                Self { $($field: overrides.$field.unwrap_or(self.$field),)* }
            }

            /// The limit `name`.
            pub fn get(&self, name: &str) -> Option<usize> {
                match name {
                    $(stringify!($field) => Some(self.$field),)*
                    _ => None,
                }
            }
        }

        impl LimitOverrides {
            /// Set (`Some`) or clear (`None`) the limit `name`, checked against its range.
            pub fn set(&mut self, name: &str, value: Option<usize>) -> Result<(), LimitError> {
                match name {
                    $(stringify!($field) => {
                        if let Some(v) = value && !($min..=$max).contains(&v) {
                            return Err(LimitError::OutOfRange { name: stringify!($field), min: $min, max: $max });
                        }
                        self.$field = value;
                        Ok(())
                    })*
                    other => Err(LimitError::Unknown { name: other.to_string() }),
                }
            }

            /// Every value set is within its limit's range.
            pub fn validate(&self) -> Result<(), LimitError> {
                $(if let Some(v) = self.$field && !($min..=$max).contains(&v) {
                    return Err(LimitError::OutOfRange { name: stringify!($field), min: $min, max: $max });
                })*
                Ok(())
            }

            /// The names of the limits set here.
            pub fn names(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$field.is_some() { names.push(stringify!($field)); })*
                names
            }
        }
    };
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

limits! {
    /// Executions running at once (on the node that runs the tenant);
    /// more wait for a slot.
    running_executions: 1, 10_000, 8;
    /// Executions stored (any state); a new one beyond it is refused.
    stored_executions: 1, 1_000_000_000, 1_000_000;
    /// Executions of webhooks and API runs accepted and not yet started; a
    /// new one beyond it is refused until the tenant's worker catches up.
    queued_executions: 1, 10_000_000, 1_000;
    /// Bytes of one step's output (as JSON).
    step_output_bytes: 1, GIB, 10 * MIB;
    /// Bytes of one execution's record: the inputs, outputs and errors of its steps.
    execution_record_bytes: 1, 64 * GIB, 256 * MIB;
    /// Items of one `foreach` step.
    foreach_items: 1, 10_000_000, 10_000;
    /// Items of a `foreach` run at once: the definition's `concurrency` is capped by it.
    foreach_concurrency: 1, 10_000, 32;
    /// Bytes of a request body (webhooks, API runs); never more than the node's `http.max_body_bytes`.
    request_body_bytes: 1, GIB, MIB;
    /// SQL pools (one per `postgres` connection used by `sql` steps) on a node.
    sql_pools: 0, 10_000, 16;
    /// Sessions of one SQL pool.
    sql_connections: 1, 1_000, 4;
    /// Queue triggers consuming at once.
    queue_consumers: 0, 10_000, 16;
    /// Thousandths of a core the tenant's long-running expressions (jq and
    /// templates) get on a node once past their burst; they are paced to it.
    expression_cpu_millicores: 1, 1_000_000, 100;
    /// Milliseconds of CPU the tenant's expressions may use at once before
    /// they are paced (it refills at `expression_cpu_millicores`).
    expression_cpu_burst_ms: 0, 3_600_000, 500;
}

/// How many bytes `value` takes as JSON, without building the text.
pub fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value); // a Value always serialises
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let mut overrides = LimitOverrides::default();
        overrides.set("running_executions", Some(2)).unwrap();
        let limits = TenantLimits::default().with(&overrides);
        assert_eq!(limits.running_executions, 2);
        assert_eq!(limits.stored_executions, TenantLimits::default().stored_executions);
        assert_eq!(overrides.names(), vec!["running_executions"]);
        overrides.set("running_executions", None).unwrap();
        assert_eq!(TenantLimits::default().with(&overrides), TenantLimits::default());
    }

    #[test]
    fn nonsense_values_and_unknown_names_are_refused() {
        let mut overrides = LimitOverrides::default();
        assert!(matches!(overrides.set("running_executions", Some(0)), Err(LimitError::OutOfRange { .. })));
        assert!(matches!(overrides.set("sql_connections", Some(1_000_000)), Err(LimitError::OutOfRange { .. })));
        assert!(matches!(overrides.set("coffee", Some(1)), Err(LimitError::Unknown { .. })));
        assert!(overrides.set("queue_consumers", Some(0)).is_ok(), "no queue consumers at all is a valid choice");
        let stored: LimitOverrides = serde_json::from_value(serde_json::json!({"foreach_items": 0})).unwrap();
        assert!(stored.validate().is_err());
    }

    #[test]
    fn json_size_is_the_length_of_the_text() {
        let value = serde_json::json!({"a": [1, "two", null], "b": "é"});
        assert_eq!(json_size(&value), serde_json::to_vec(&value).unwrap().len());
    }
}
