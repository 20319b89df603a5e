//! Sessions (`sessions`): [`Session`] and how a session is keyed within its agent group
//! ([`SessionMode::session_key`]).
//!
//! A session's origin is either a chat (`messaging_group_id`, `thread_id`) or, for a session
//! started by another agent's message, the session that asked (`source_session_id`): its
//! answers go back there. Such a session is keyed `a2a:<source session>` ([`a2a_key`]), so
//! every asking session gets its own conversation with the target agent group.

use super::{DbError, text_enum};
use protocol::time::now_ms;
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// How sessions are keyed for a wiring (DESIGN §4).
    SessionMode {
        /// One session per agent group and chat.
        Shared => "shared",
        /// One session per agent group, chat and thread.
        PerThread => "per-thread",
        /// The agent group's one session, across chats.
        AgentShared => "agent-shared",
    }
);

impl SessionMode {
    /// The key that identifies a session of this mode within its agent group.
    pub fn session_key(self, messaging_group_id: &str, thread_id: Option<&str>) -> String {
        match self {
            SessionMode::Shared => format!("chat:{messaging_group_id}"),
            SessionMode::PerThread => {
                format!("thread:{messaging_group_id}:{}", thread_id.unwrap_or(""))
            }
            SessionMode::AgentShared => "agent".to_owned(),
        }
    }
}

/// The key of the session an agent group keeps for messages from `source` (another agent's
/// session).
pub fn a2a_key(source: &SessionId) -> String {
    format!("a2a:{source}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub agent_group_id: AgentGroupId,
    pub session_key: String,
    pub messaging_group_id: Option<String>,
    pub thread_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub last_active_at: i64,
    /// Set for a session started by another agent: where its answers go.
    pub source_session_id: Option<SessionId>,
    /// Why the session was marked failed (its `outbound.db` was hostile or broken); it gets
    /// no container until it is reset.
    #[serde(default)]
    pub failed_reason: Option<String>,
    /// When it was marked failed (unix ms).
    #[serde(default)]
    pub failed_at: Option<i64>,
}

fn session_from(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        agent_group_id: row.get(1)?,
        session_key: row.get(2)?,
        messaging_group_id: row.get(3)?,
        thread_id: row.get(4)?,
        status: row.get(5)?,
        created_at: row.get(6)?,
        last_active_at: row.get(7)?,
        source_session_id: row.get(8)?,
        failed_reason: row.get(9)?,
        failed_at: row.get(10)?,
    })
}

const COLUMNS: &str = "id, agent_group_id, session_key, messaging_group_id, thread_id, status, created_at, \
     last_active_at, source_session_id, failed_reason, failed_at";

/// Finds the session for `key` in `agent_group`, creating it if missing. Returns the session
/// and whether it was created.
pub fn resolve_session(
    conn: &Connection,
    agent_group: &AgentGroupId,
    key: &str,
    messaging_group_id: Option<&str>,
    thread_id: Option<&str>,
) -> Result<(Session, bool), DbError> {
    resolve(conn, agent_group, key, messaging_group_id, thread_id, None)
}

/// Finds or creates the session `agent_group` keeps for messages from the session `source`.
pub fn resolve_a2a_session(
    conn: &Connection,
    agent_group: &AgentGroupId,
    source: &SessionId,
) -> Result<(Session, bool), DbError> {
    resolve(
        conn,
        agent_group,
        &a2a_key(source),
        None,
        None,
        Some(source),
    )
}

fn resolve(
    conn: &Connection,
    agent_group: &AgentGroupId,
    key: &str,
    messaging_group_id: Option<&str>,
    thread_id: Option<&str>,
    source: Option<&SessionId>,
) -> Result<(Session, bool), DbError> {
    let now = now_ms();
    let created = conn.execute(
        "INSERT OR IGNORE INTO sessions (id, agent_group_id, session_key, messaging_group_id, thread_id, created_at, \
         last_active_at, source_session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![SessionId::generate(), agent_group, key, messaging_group_id, thread_id, now, source],
    )? > 0;
    conn.execute(
        "UPDATE sessions SET last_active_at = ?3, status = 'active' WHERE agent_group_id = ?1 AND session_key = ?2",
        params![agent_group, key, now],
    )?;
    let session = conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions WHERE agent_group_id = ?1 AND session_key = ?2"),
        params![agent_group, key],
        session_from,
    )?;
    Ok((session, created))
}

pub fn session(conn: &Connection, id: &SessionId) -> Result<Session, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "session",
        id: id.to_string(),
    })
}

/// Sessions, optionally of one agent group, newest activity first.
pub fn list_sessions(
    conn: &Connection,
    agent_group: Option<&AgentGroupId>,
) -> Result<Vec<Session>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE ?1 IS NULL OR agent_group_id = ?1 ORDER BY last_active_at DESC, id"
    ))?;
    let rows = statement.query_map([agent_group], session_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sessions with status `active`.
pub fn active_sessions(conn: &Connection) -> Result<Vec<Session>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE status = 'active' ORDER BY id"
    ))?;
    let rows = statement.query_map([], session_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a session `active` or `stopped`.
pub fn set_session_status(conn: &Connection, id: &SessionId, active: bool) -> Result<(), DbError> {
    let changed = conn.execute(
        "UPDATE sessions SET status = ?2 WHERE id = ?1",
        params![id, if active { "active" } else { "stopped" }],
    )?;
    if changed == 0 {
        return Err(DbError::NotFound {
            what: "session",
            id: id.to_string(),
        });
    }
    Ok(())
}

/// Forgets a session: the next message for its key starts a new one.
pub fn delete_session(conn: &Connection, id: &SessionId) -> Result<Session, DbError> {
    let found = session(conn, id)?;
    conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
    Ok(found)
}

/// Marks a session failed with its reason, once: a session already failed keeps its first
/// reason and time. Returns false when it was failed already.
pub fn set_session_failed(
    conn: &Connection,
    id: &SessionId,
    reason: &str,
) -> Result<bool, DbError> {
    let changed = conn.execute(
        "UPDATE sessions SET failed_reason = ?2, failed_at = ?3 WHERE id = ?1 AND failed_reason IS NULL",
        params![id, reason, now_ms()],
    )?;
    if changed == 0 {
        // Tell "already failed" from "no such session".
        session(conn, id)?;
    }
    Ok(changed > 0)
}

/// Clears a session's failure (it may get a container again).
pub fn clear_session_failure(conn: &Connection, id: &SessionId) -> Result<(), DbError> {
    conn.execute(
        "UPDATE sessions SET failed_reason = NULL, failed_at = NULL WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// The failed sessions and why (loaded at start, so a failure survives a host restart).
pub fn failed_sessions(conn: &Connection) -> Result<Vec<(SessionId, String)>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, failed_reason FROM sessions WHERE failed_reason IS NOT NULL ORDER BY id",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The sessions whose origin is the chat `channel_type`/`platform_id`, with their agent
/// group's folder: those that may have replies waiting for a recipient of that chat.
pub fn sessions_of_chat(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
) -> Result<Vec<(Session, String)>, DbError> {
    sessions_where(
        conn,
        "m.channel_type = ?1 AND m.platform_id = ?2",
        &[channel_type, platform_id],
    )
}

/// The sessions of every chat of a channel type, with their agent group's folder.
pub fn sessions_of_channel(
    conn: &Connection,
    channel_type: &str,
) -> Result<Vec<(Session, String)>, DbError> {
    sessions_where(conn, "m.channel_type = ?1", &[channel_type])
}

fn sessions_where(
    conn: &Connection,
    filter: &str,
    params: &[&str],
) -> Result<Vec<(Session, String)>, DbError> {
    let columns: String = COLUMNS
        .split(", ")
        .map(|column| format!("s.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {columns}, g.folder FROM sessions s \
         JOIN messaging_groups m ON m.id = s.messaging_group_id \
         JOIN agent_groups g ON g.id = s.agent_group_id \
         WHERE {filter} ORDER BY s.id"
    ))?;
    let rows = statement.query_map(rusqlite::params_from_iter(params), |row| {
        Ok((session_from(row)?, row.get(11)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_fails_once_and_a_clear_brings_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("crabpot.db")).unwrap();
        let group = super::super::ensure_agent_group(&conn, "main", "Main").unwrap();
        let (chat, _) =
            super::super::ensure_messaging_group(&conn, "cli", "local", "terminal", false).unwrap();
        let (session, _) =
            resolve_session(&conn, &group.id, "chat:x", Some(&chat.id), None).unwrap();
        assert!(set_session_failed(&conn, &session.id, "first").unwrap());
        assert!(!set_session_failed(&conn, &session.id, "second").unwrap());
        let stored = super::super::session(&conn, &session.id).unwrap();
        assert_eq!(stored.failed_reason.as_deref(), Some("first"));
        assert!(stored.failed_at.is_some());
        assert_eq!(
            failed_sessions(&conn).unwrap(),
            [(session.id.clone(), "first".to_owned())]
        );
        let of_chat = sessions_of_chat(&conn, "cli", "local").unwrap();
        assert_eq!(of_chat.len(), 1);
        assert_eq!(of_chat[0].1, group.folder);
        assert!(sessions_of_chat(&conn, "cli", "other").unwrap().is_empty());
        clear_session_failure(&conn, &session.id).unwrap();
        assert!(failed_sessions(&conn).unwrap().is_empty());
        assert!(set_session_failed(&conn, &SessionId::new("nope"), "x").is_err());
    }
}
