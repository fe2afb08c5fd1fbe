//! Tenant roles, ordered by what they may do, and how they are read from
//! requests and from the database.

use serde::{de, Deserialize, Deserializer, Serialize};
use tokio_postgres::types::{FromSql, Type};

/// viewer < editor < admin < owner. Viewers read; editors change the
/// tenant's resources; admins also manage users and API keys; owners also
/// manage other owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
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

/// A stored role this version does not know: a corrupt row, or one written
/// by a newer version (during a rollback). Reading it fails the request
/// (500, logged) rather than guess a role, which would grant or take away
/// rights silently.
#[derive(Debug, thiserror::Error)]
#[error("the stored role {0:?} is not a role")]
pub struct UnknownRole(String);

/// Roles are stored as text (`users.role`, `api_keys.role`); read one with
/// `row.try_get`, whose error names the column and the value.
impl<'a> FromSql<'a> for Role {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Role::parse(text).ok_or_else(|| UnknownRole(text.to_owned()).into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
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
