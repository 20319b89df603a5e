//! Out-of-process channel adapters (`adapters`): [`Adapter`], the channel type each one
//! serves and the hash of its token. The token is made and checked by
//! `channels::external::token`; this file only stores what it is given.
//!
//! Names and channel types are short and plain ([`check_name`]): a channel type appears in
//! chat addresses (`<type>/<platform id>`) and sender ids (`<type>:<handle>`), so it may hold
//! neither `/` nor `:`.

use super::{DbError, constraint};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// The longest adapter name or channel type.
pub const MAX_NAME_CHARS: usize = 32;

/// One registered adapter, without its token hash (which never leaves the host's DB).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adapter {
    pub name: String,
    pub channel_type: String,
    /// Unix ms.
    pub created_at: i64,
    /// When it last said hello or went away (unix ms); `None` before its first hello.
    pub last_seen_at: Option<i64>,
}

fn adapter_from(row: &Row<'_>) -> rusqlite::Result<Adapter> {
    Ok(Adapter {
        name: row.get(0)?,
        channel_type: row.get(1)?,
        created_at: row.get(2)?,
        last_seen_at: row.get(3)?,
    })
}

const COLUMNS: &str = "name, channel_type, created_at, last_seen_at";

/// Whether `value` is a valid adapter name or channel type: 1 to [`MAX_NAME_CHARS`] of
/// `a-z`, `0-9`, `-`, `_`, starting with a letter or digit. `what` names it in the error.
pub fn check_name(what: &str, value: &str) -> Result<(), DbError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_NAME_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "{what} {value:?} must be 1-{MAX_NAME_CHARS} characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// Registers an adapter for `channel_type` with the hash of its token.
pub fn create_adapter(
    conn: &Connection,
    name: &str,
    channel_type: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<Adapter, DbError> {
    check_name("adapter name", name)?;
    check_name("channel type", channel_type)?;
    conn.execute(
        "INSERT INTO adapters (name, channel_type, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, channel_type, token_hash, now_ms],
    )
    .map_err(|e| {
        constraint(e, || {
            format!(
                "an adapter named {name:?} or serving channel type {channel_type:?} exists already"
            )
        })
    })?;
    Ok(Adapter {
        name: name.to_owned(),
        channel_type: channel_type.to_owned(),
        created_at: now_ms,
        last_seen_at: None,
    })
}

/// Every adapter, by name.
pub fn list_adapters(conn: &Connection) -> Result<Vec<Adapter>, DbError> {
    let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM adapters ORDER BY name"))?;
    let adapters = statement
        .query_map([], adapter_from)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(adapters)
}

/// The adapter serving `channel_type` and its token hash, if there is one.
pub fn adapter_for_channel(
    conn: &Connection,
    channel_type: &str,
) -> Result<Option<(Adapter, String)>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS}, token_hash FROM adapters WHERE channel_type = ?1"),
            [channel_type],
            |row| Ok((adapter_from(row)?, row.get(4)?)),
        )
        .optional()?)
}

/// Removes an adapter (its token stops working); returns what it was.
pub fn remove_adapter(conn: &Connection, name: &str) -> Result<Adapter, DbError> {
    let adapter = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM adapters WHERE name = ?1"),
            [name],
            adapter_from,
        )
        .optional()?
        .ok_or_else(|| DbError::NotFound {
            what: "adapter",
            id: name.to_owned(),
        })?;
    conn.execute("DELETE FROM adapters WHERE name = ?1", [name])?;
    Ok(adapter)
}

/// Notes that the adapter was seen (a hello, a disconnect). Nothing when it was removed.
pub fn touch_adapter(conn: &Connection, name: &str, now_ms: i64) -> Result<(), DbError> {
    conn.execute(
        "UPDATE adapters SET last_seen_at = ?2 WHERE name = ?1",
        params![name, now_ms],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_created_listed_found_and_removed() {
        let (_dir, conn) = super::super::tests::db();
        let made = create_adapter(&conn, "tg", "telegram", "sha256:aa", 10).unwrap();
        assert_eq!(made.last_seen_at, None);
        create_adapter(&conn, "mx", "matrix", "sha256:bb", 11).unwrap();
        let names: Vec<String> = list_adapters(&conn)
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["mx", "tg"]);

        let (found, hash) = adapter_for_channel(&conn, "telegram").unwrap().unwrap();
        assert_eq!((found.name.as_str(), hash.as_str()), ("tg", "sha256:aa"));
        assert!(adapter_for_channel(&conn, "slack").unwrap().is_none());

        touch_adapter(&conn, "tg", 99).unwrap();
        let (found, _) = adapter_for_channel(&conn, "telegram").unwrap().unwrap();
        assert_eq!(found.last_seen_at, Some(99));

        assert_eq!(
            remove_adapter(&conn, "tg").unwrap().channel_type,
            "telegram"
        );
        assert!(adapter_for_channel(&conn, "telegram").unwrap().is_none());
        assert!(matches!(
            remove_adapter(&conn, "tg"),
            Err(DbError::NotFound { .. })
        ));
    }

    #[test]
    fn names_and_channel_types_are_unique() {
        let (_dir, conn) = super::super::tests::db();
        create_adapter(&conn, "tg", "telegram", "h", 1).unwrap();
        for (name, channel_type) in [("tg", "other"), ("other", "telegram")] {
            let error = create_adapter(&conn, name, channel_type, "h", 2).unwrap_err();
            assert!(matches!(error, DbError::Conflict(_)), "{error:?}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        fn check(value: &str, valid: bool) {
            assert_eq!(check_name("name", value).is_ok(), valid, "{value:?}");
        }
        check("telegram", true);
        check("my_chat-2", true);
        check("9lives", true);
        check("", false);
        check("-x", false);
        check("Tele", false);
        check("a/b", false);
        check("a:b", false);
        check("a b", false);
        check(&"x".repeat(MAX_NAME_CHARS), true);
        check(&"x".repeat(MAX_NAME_CHARS + 1), false);
        check("é", false);
    }
}
