//! Host header → which part of the platform a request is for: the
//! classification itself is `tessera_hosts` (the load balancer applies the
//! same rules); this module holds the node's check that every refusal is an
//! answer with a status and a code.

pub use tessera_hosts::{classify, HostError, HostTarget};

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use proptest::prelude::*;

    use tessera_hosts::{classify, HostTarget, TenantSlug};
    use crate::error::ApiError;

    /// Hosts near the valid ones (labels, dots, ports, case) and far
    /// from them (any text, any length).
    fn host_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[a-zA-Z0-9.:_-]{0,300}",
            "([a-z0-9-]{0,70}\\.){0,4}(localhost|example\\.com)\\.?(:[0-9]{0,7})?",
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    }

    proptest! {
        #![proptest_config(crate::hostile_config())]

        /// Any Host header: a platform or tenant answer whose slug is valid
        /// and under the base domain, or an error that is a 4xx with a code.
        #[test]
        fn hostile_hosts_are_classified_or_refused_with_a_code(host in host_text(), base in prop::sample::select(vec!["localhost", "example.com", "eu1.example.com"])) {
            match classify(Some(&host), base) {
                Ok(HostTarget::Platform) => {
                    let name = host.to_ascii_lowercase();
                    prop_assert!(name.starts_with(base), "{host}");
                }
                Ok(HostTarget::Tenant(slug)) => {
                    prop_assert!(TenantSlug::parse(slug.as_str()).is_ok());
                    prop_assert!(host.to_ascii_lowercase().starts_with(&format!("{}.{base}", slug.as_str())), "{host}");
                }
                Err(e) => {
                    let answer = ApiError::from(e);
                    prop_assert!(answer.status_code().is_client_error());
                    prop_assert!(!answer.code().is_empty());
                }
            }
        }
    }
}
