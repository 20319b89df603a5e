//! Id newtypes: [`SessionId`], [`AgentGroupId`], [`MessageId`].
//!
//! Ids are strings on the wire and TEXT in SQL. Ids that name folders on disk are checked
//! with [`is_safe_folder_name`] so that a hostile or mistaken value can never escape the
//! sessions root (no `/`, no `..`, no NUL).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(Self)
            }
        }
    };
}

string_id!(
    /// One conversation's session; names its folder under `data/sessions/<group>/`.
    SessionId
);
string_id!(
    /// An agent group; names its folder under `data/sessions/`.
    AgentGroupId
);
string_id!(
    /// A message row in `inbound.db` or `outbound.db`.
    MessageId
);

impl SessionId {
    /// A fresh random session id (UUID v7, so ids sort by creation time).
    pub fn generate() -> Self {
        Self(format!("s-{}", uuid::Uuid::now_v7().simple()))
    }
}

impl MessageId {
    /// A fresh random message id (UUID v7).
    pub fn generate() -> Self {
        Self(format!("m-{}", uuid::Uuid::now_v7().simple()))
    }
}

/// True when `name` is a single, plain path component: ASCII letters, digits, `-`, `_`, `.`,
/// 1 to 128 characters, not starting with `.`. Used for every id that becomes a folder name.
pub fn is_safe_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        for (name, ok) in [
            ("main", true),
            ("s-0190abc", true),
            ("a.b_c-d", true),
            ("", false),
            ("..", false),
            (".hidden", false),
            ("a/b", false),
            ("a\0b", false),
            ("é", false),
        ] {
            assert_eq!(is_safe_folder_name(name), ok, "{name:?}");
        }
        assert!(!is_safe_folder_name(&"x".repeat(129)));
    }

    #[test]
    fn generated_ids_are_safe_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert!(is_safe_folder_name(a.as_str()));
    }
}
