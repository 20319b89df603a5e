//! What the platform adapters keep across restarts (`channel_state`: a value per channel
//! type and key, such as Telegram's update offset or Discord's gateway session), and the
//! platform event ids already taken in (`channel_seen_events`), so an event a platform sends
//! again (Slack's retries, a redelivered webhook) is stored once.

use super::DbError;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};

/// How long a seen event id is remembered: far past every platform's retry window.
pub const SEEN_EVENTS_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// The value stored under `key`, if any.
pub fn get(conn: &Connection, channel_type: &str, key: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT value FROM channel_state WHERE channel_type = ?1 AND key = ?2",
            params![channel_type, key],
            |row| row.get(0),
        )
        .optional()?)
}

/// Stores `value` under `key`, replacing what was there.
pub fn put(conn: &Connection, channel_type: &str, key: &str, value: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO channel_state (channel_type, key, value, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (channel_type, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![channel_type, key, value, now_ms()],
    )?;
    Ok(())
}

/// Forgets the value under `key`.
pub fn delete(conn: &Connection, channel_type: &str, key: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM channel_state WHERE channel_type = ?1 AND key = ?2",
        params![channel_type, key],
    )?;
    Ok(())
}

/// Records that the platform event `event_id` was taken in; false when it had been already.
/// Ids older than [`SEEN_EVENTS_KEEP_MS`] are forgotten on the way.
pub fn first_event(conn: &Connection, channel_type: &str, event_id: &str) -> Result<bool, DbError> {
    let now = now_ms();
    conn.execute(
        "DELETE FROM channel_seen_events WHERE seen_at < ?1",
        [now - SEEN_EVENTS_KEEP_MS],
    )?;
    Ok(conn.execute(
        "INSERT OR IGNORE INTO channel_seen_events (channel_type, event_id, seen_at) VALUES (?1, ?2, ?3)",
        params![channel_type, event_id, now],
    )? > 0)
}

/// Whether `event_id` was recorded by [`first_event`] (and not forgotten since).
pub fn seen_event(conn: &Connection, channel_type: &str, event_id: &str) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM channel_seen_events WHERE channel_type = ?1 AND event_id = ?2 AND seen_at >= ?3",
        )?
        .exists(params![channel_type, event_id, now_ms() - SEEN_EVENTS_KEEP_MS])?)
}

/// Forgets that `event_id` was seen (its event could not be stored after all, so the
/// platform's retry must be taken).
pub fn forget_event(conn: &Connection, channel_type: &str, event_id: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM channel_seen_events WHERE channel_type = ?1 AND event_id = ?2",
        params![channel_type, event_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_persist_and_events_are_seen_once() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Invalid(e.to_string()))?;
        let conn = super::super::open(&dir.path().join("crabpot.db"))?;
        assert_eq!(get(&conn, "telegram", "offset")?, None);
        put(&conn, "telegram", "offset", "41")?;
        put(&conn, "telegram", "offset", "42")?;
        assert_eq!(get(&conn, "telegram", "offset")?.as_deref(), Some("42"));
        assert_eq!(get(&conn, "discord", "offset")?, None);
        delete(&conn, "telegram", "offset")?;
        assert_eq!(get(&conn, "telegram", "offset")?, None);
        assert!(first_event(&conn, "slack", "Ev1")?);
        assert!(!first_event(&conn, "slack", "Ev1")?);
        assert!(first_event(&conn, "discord", "Ev1")?);
        forget_event(&conn, "slack", "Ev1")?;
        assert!(first_event(&conn, "slack", "Ev1")?);
        Ok(())
    }
}
