//! Tenant roles, ordered by what they may do.

use serde::{de, Deserialize, Deserializer, Serialize};

/// viewer < editor < admin < owner. Viewers read; editors change the
/// tenant's resources; admins also manage users and API keys; owners also
/// manage other owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// Read from a string by hand rather than derived: serde_json reports a
/// non-string where an enum is expected as a syntax error, so `{"role": 3}`
/// (well-formed JSON of the wrong type) would be answered as broken JSON.
impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Role::parse(&raw).ok_or_else(|| de::Error::unknown_variant(&raw, &["viewer", "editor", "admin", "owner"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_from_strings_and_refuse_other_types_as_data_errors() {
        assert_eq!(serde_json::from_str::<Role>(r#""admin""#).unwrap(), Role::Admin);
        assert_eq!(serde_json::to_string(&Role::Owner).unwrap(), r#""owner""#);
        for bad in [r#""root""#, "3", "null", r#"{"owner": null}"#, r#"["owner"]"#] {
            let e = serde_json::from_str::<Role>(bad).unwrap_err();
            assert!(e.is_data(), "{bad}: {e}");
        }
    }
}
