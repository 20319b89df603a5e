//! Drafts shown as a platform message edited in place (`live_drafts`), remembered so that a
//! host that restarts in the middle of a reply edits that same message into the reply (see
//! `crate::bridge::live`). A row lives from the draft's first message until its reply took
//! its place or the draft was removed.

use super::DbError;
use protocol::SessionId;
use protocol::time::now_ms;
use rusqlite::{Connection, params};

/// How long a draft is remembered: a turn that has not ended by then never will.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;

/// One draft's platform message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveDraft {
    pub session: SessionId,
    /// The id of the inbound row the reply answers.
    pub key: String,
    /// The chat it shows in (a `ChatAddress`'s parts).
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
    pub platform_message_id: String,
}

pub fn put(conn: &Connection, draft: &LiveDraft) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR REPLACE INTO live_drafts (session_id, draft_key, channel_type, platform_id, \
         thread_id, platform_message_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            draft.session.as_str(),
            draft.key,
            draft.channel_type,
            draft.platform_id,
            draft.thread_id,
            draft.platform_message_id,
            now_ms()
        ],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, session: &SessionId, key: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM live_drafts WHERE session_id = ?1 AND draft_key = ?2",
        params![session.as_str(), key],
    )?;
    Ok(())
}

/// Every draft remembered, after forgetting those older than [`KEEP_MS`].
pub fn list(conn: &Connection) -> Result<Vec<LiveDraft>, DbError> {
    conn.execute(
        "DELETE FROM live_drafts WHERE created_at < ?1",
        [now_ms() - KEEP_MS],
    )?;
    let mut statement = conn.prepare(
        "SELECT session_id, draft_key, channel_type, platform_id, thread_id, platform_message_id \
         FROM live_drafts ORDER BY created_at",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(LiveDraft {
            session: SessionId::new(row.get::<_, String>(0)?),
            key: row.get(1)?,
            channel_type: row.get(2)?,
            platform_id: row.get(3)?,
            thread_id: row.get(4)?,
            platform_message_id: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_remembered_until_deleted() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Invalid(e.to_string()))?;
        let conn = super::super::open(&dir.path().join("crabpot.db"))?;
        let draft = LiveDraft {
            session: SessionId::new("s-1"),
            key: "m-1".into(),
            channel_type: "telegram".into(),
            platform_id: "42".into(),
            thread_id: Some("7".into()),
            platform_message_id: "42:100".into(),
        };
        put(&conn, &draft)?;
        assert_eq!(list(&conn)?, std::slice::from_ref(&draft));
        delete(&conn, &draft.session, &draft.key)?;
        assert!(list(&conn)?.is_empty());
        Ok(())
    }
}
