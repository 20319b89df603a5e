//! The central DB `data/crabpot.db` (DESIGN §7): schema migrations and queries. Host-only,
//! WAL, owned by one [`super::DbThread`].
//!
//! Key types: [`AgentGroup`], [`MessagingGroup`], [`Wiring`], [`Session`], [`SessionMode`].
//! Every function takes a `&Connection`, so a caller can group several in one transaction.

use super::DbError;
use protocol::time::now_ms;
use protocol::{AgentGroupId, Destination, DestinationType, SessionId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use rusqlite_migration::{M, Migrations};
use serde::Serialize;
use std::path::Path;

const MIGRATIONS: &[&str] = &[include_str!("../../migrations/central/001_init.sql")];

/// Opens (creating if needed) and migrates the central DB.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Migrations::new(MIGRATIONS.iter().map(|s| M::up(s)).collect()).to_latest(&mut conn)?;
    Ok(conn)
}

/// The install id that names and labels this installation's containers: the configured one,
/// else the one stored on first start.
pub fn install_id(conn: &Connection, configured: Option<&str>) -> Result<String, DbError> {
    if let Some(id) = configured {
        return Ok(id.to_owned());
    }
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'install_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = stored {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('install_id', ?1)",
        [&id],
    )?;
    Ok(id)
}

/// How sessions are keyed for a wiring (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    /// One session per agent group and chat.
    Shared,
    /// One session per agent group, chat and thread.
    PerThread,
    /// The agent group's one session, across chats.
    AgentShared,
}

impl SessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Shared => "shared",
            SessionMode::PerThread => "per-thread",
            SessionMode::AgentShared => "agent-shared",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "shared" => Some(SessionMode::Shared),
            "per-thread" => Some(SessionMode::PerThread),
            "agent-shared" => Some(SessionMode::AgentShared),
            _ => None,
        }
    }

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentGroup {
    pub id: AgentGroupId,
    pub folder: String,
    pub name: String,
    pub container_config: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessagingGroup {
    pub id: String,
    pub channel_type: String,
    pub platform_id: String,
    pub name: String,
    pub is_group: bool,
    pub unknown_sender_policy: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Wiring {
    pub id: String,
    pub messaging_group_id: String,
    pub agent_group_id: AgentGroupId,
    pub session_mode: SessionMode,
    pub engage_mode: String,
    pub engage_pattern: Option<String>,
    pub sender_scope: String,
    pub ignored_message_policy: String,
    pub priority: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: SessionId,
    pub agent_group_id: AgentGroupId,
    pub session_key: String,
    pub messaging_group_id: Option<String>,
    pub thread_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub last_active_at: i64,
}

fn agent_group_from(row: &Row<'_>) -> rusqlite::Result<AgentGroup> {
    Ok(AgentGroup {
        id: row.get(0)?,
        folder: row.get(1)?,
        name: row.get(2)?,
        container_config: row.get(3)?,
    })
}

fn messaging_group_from(row: &Row<'_>) -> rusqlite::Result<MessagingGroup> {
    Ok(MessagingGroup {
        id: row.get(0)?,
        channel_type: row.get(1)?,
        platform_id: row.get(2)?,
        name: row.get(3)?,
        is_group: row.get(4)?,
        unknown_sender_policy: row.get(5)?,
    })
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
    })
}

const AGENT_GROUP_COLUMNS: &str = "id, folder, name, container_config";
const MESSAGING_GROUP_COLUMNS: &str =
    "id, channel_type, platform_id, name, is_group, unknown_sender_policy";
const SESSION_COLUMNS: &str = "id, agent_group_id, session_key, messaging_group_id, thread_id, status, created_at, last_active_at";

/// The agent group stored for `folder`, created if missing (id = folder).
pub fn ensure_agent_group(
    conn: &Connection,
    folder: &str,
    name: &str,
) -> Result<AgentGroup, DbError> {
    if !protocol::ids::is_safe_folder_name(folder) {
        return Err(DbError::Invalid(format!(
            "agent group folder {folder:?} must be a plain name of [A-Za-z0-9._-]"
        )));
    }
    conn.execute(
        "INSERT OR IGNORE INTO agent_groups (id, folder, name, created_at) VALUES (?1, ?1, ?2, ?3)",
        params![folder, name, now_ms()],
    )?;
    agent_group(conn, &AgentGroupId::new(folder))
}

pub fn agent_group(conn: &Connection, id: &AgentGroupId) -> Result<AgentGroup, DbError> {
    conn.query_row(
        &format!("SELECT {AGENT_GROUP_COLUMNS} FROM agent_groups WHERE id = ?1"),
        [id],
        agent_group_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "agent group",
        id: id.to_string(),
    })
}

/// The chat stored for (`channel_type`, `platform_id`), created if missing.
pub fn ensure_messaging_group(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
    name: &str,
    is_group: bool,
) -> Result<(MessagingGroup, bool), DbError> {
    let created = conn.execute(
        "INSERT OR IGNORE INTO messaging_groups (id, channel_type, platform_id, name, is_group, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![format!("mg-{}", uuid::Uuid::now_v7().simple()), channel_type, platform_id, name, is_group, now_ms()],
    )? > 0;
    let group = conn.query_row(
        &format!("SELECT {MESSAGING_GROUP_COLUMNS} FROM messaging_groups WHERE channel_type = ?1 AND platform_id = ?2"),
        params![channel_type, platform_id],
        messaging_group_from,
    )?;
    Ok((group, created))
}

pub fn messaging_group(conn: &Connection, id: &str) -> Result<MessagingGroup, DbError> {
    conn.query_row(
        &format!("SELECT {MESSAGING_GROUP_COLUMNS} FROM messaging_groups WHERE id = ?1"),
        [id],
        messaging_group_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "chat",
        id: id.to_owned(),
    })
}

/// What a new wiring says; defaults match a direct chat that engages on every message.
#[derive(Clone, Debug)]
pub struct NewWiring {
    pub session_mode: SessionMode,
    pub engage_mode: String,
    pub engage_pattern: Option<String>,
    pub priority: i64,
    /// The destination name the agent group uses for this chat.
    pub destination_name: String,
}

/// Wires a chat to an agent group (if not yet wired) and creates the group's destination row
/// for the chat. Returns the wiring.
pub fn ensure_wiring(
    conn: &Connection,
    chat: &MessagingGroup,
    agent_group: &AgentGroupId,
    wiring: &NewWiring,
) -> Result<Wiring, DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO wirings (id, messaging_group_id, agent_group_id, session_mode, engage_mode, \
         engage_pattern, priority, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            format!("w-{}", uuid::Uuid::now_v7().simple()),
            chat.id,
            agent_group,
            wiring.session_mode.as_str(),
            wiring.engage_mode,
            wiring.engage_pattern,
            wiring.priority,
            now_ms()
        ],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO agent_destinations (agent_group_id, name, display_name, type, messaging_group_id, created_at) \
         VALUES (?1, ?2, ?3, 'channel', ?4, ?5)",
        params![agent_group, wiring.destination_name, chat.name, chat.id, now_ms()],
    )?;
    wirings_for_chat(conn, &chat.id)?
        .into_iter()
        .find(|w| &w.agent_group_id == agent_group)
        .ok_or_else(|| DbError::NotFound {
            what: "wiring",
            id: chat.id.clone(),
        })
}

/// The wirings of a chat, highest priority first.
pub fn wirings_for_chat(
    conn: &Connection,
    messaging_group_id: &str,
) -> Result<Vec<Wiring>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, messaging_group_id, agent_group_id, session_mode, engage_mode, engage_pattern, sender_scope, \
         ignored_message_policy, priority FROM wirings WHERE messaging_group_id = ?1 ORDER BY priority DESC, created_at",
    )?;
    let rows = statement.query_map([messaging_group_id], |row| {
        let mode: String = row.get(3)?;
        Ok(Wiring {
            id: row.get(0)?,
            messaging_group_id: row.get(1)?,
            agent_group_id: row.get(2)?,
            session_mode: SessionMode::parse(&mode).unwrap_or(SessionMode::Shared),
            engage_mode: row.get(4)?,
            engage_pattern: row.get(5)?,
            sender_scope: row.get(6)?,
            ignored_message_policy: row.get(7)?,
            priority: row.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Finds the session for `key` in `agent_group`, creating it if missing. Returns the session
/// and whether it was created.
pub fn resolve_session(
    conn: &Connection,
    agent_group: &AgentGroupId,
    key: &str,
    messaging_group_id: Option<&str>,
    thread_id: Option<&str>,
) -> Result<(Session, bool), DbError> {
    let now = now_ms();
    let created = conn.execute(
        "INSERT OR IGNORE INTO sessions (id, agent_group_id, session_key, messaging_group_id, thread_id, created_at, \
         last_active_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![SessionId::generate(), agent_group, key, messaging_group_id, thread_id, now],
    )? > 0;
    conn.execute(
        "UPDATE sessions SET last_active_at = ?3, status = 'active' WHERE agent_group_id = ?1 AND session_key = ?2",
        params![agent_group, key, now],
    )?;
    let session = conn.query_row(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE agent_group_id = ?1 AND session_key = ?2"
        ),
        params![agent_group, key],
        session_from,
    )?;
    Ok((session, created))
}

pub fn session(conn: &Connection, id: &SessionId) -> Result<Session, DbError> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "session",
        id: id.to_string(),
    })
}

/// Sessions with status `active`.
pub fn active_sessions(conn: &Connection) -> Result<Vec<Session>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'active' ORDER BY id"
    ))?;
    let rows = statement.query_map([], session_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An agent group's destinations, resolved to their routing, for projection into
/// `inbound.db` and for re-validation at delivery.
pub fn destinations_for(
    conn: &Connection,
    agent_group: &AgentGroupId,
) -> Result<Vec<Destination>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT d.name, d.display_name, d.type, m.channel_type, m.platform_id, d.thread_id, d.target_agent_group_id \
         FROM agent_destinations d LEFT JOIN messaging_groups m ON m.id = d.messaging_group_id \
         WHERE d.agent_group_id = ?1 ORDER BY d.name",
    )?;
    let rows = statement.query_map([agent_group], |row| {
        let kind: String = row.get(2)?;
        Ok(Destination {
            name: row.get(0)?,
            display_name: row.get(1)?,
            destination_type: DestinationType::parse(&kind).unwrap_or(DestinationType::Channel),
            channel_type: row.get(3)?,
            platform_id: row.get(4)?,
            thread_id: row.get(5)?,
            agent_group_id: row.get::<_, Option<String>>(6)?.map(AgentGroupId::new),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One usage report from the proxy.
#[derive(Clone, Debug)]
pub struct UsageRow {
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    pub model: String,
    pub failed: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

pub fn record_usage(conn: &Connection, usage: &UsageRow) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO usage (session_id, agent_group_id, model, requests, failed, input_tokens, output_tokens, updated_at) \
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7) ON CONFLICT (session_id, model) DO UPDATE SET \
         requests = requests + 1, failed = failed + excluded.failed, input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, updated_at = excluded.updated_at",
        params![
            usage.session_id,
            usage.agent_group_id,
            usage.model,
            i64::from(usage.failed),
            usage.input_tokens,
            usage.output_tokens,
            now_ms()
        ],
    )?;
    Ok(())
}

/// Per-session usage totals: (requests, input tokens, output tokens).
pub fn session_usage(conn: &Connection, session: &SessionId) -> Result<(i64, i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0) \
         FROM usage WHERE session_id = ?1",
        [session],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// What was dropped and why; repeats of the same key bump `count` and `last_seen`.
#[derive(Clone, Debug, Default)]
pub struct DropRecord {
    pub outbound: bool,
    pub reason: String,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub sender: Option<String>,
    pub session_id: Option<SessionId>,
    pub agent_group_id: Option<AgentGroupId>,
    pub message_id: Option<String>,
}

pub fn record_drop(conn: &Connection, drop: &DropRecord) -> Result<(), DbError> {
    let now = now_ms();
    conn.execute(
        "INSERT INTO dropped_messages (direction, reason, channel_type, platform_id, sender, session_id, agent_group_id, \
         message_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) \
         ON CONFLICT DO UPDATE SET count = count + 1, last_seen = excluded.last_seen, message_id = excluded.message_id",
        params![
            if drop.outbound { "outbound" } else { "inbound" },
            drop.reason,
            drop.channel_type,
            drop.platform_id,
            drop.sender,
            drop.session_id,
            drop.agent_group_id,
            drop.message_id,
            now
        ],
    )?;
    Ok(())
}

/// Records that a platform message reached an agent group; false when it already had.
pub fn first_sighting(
    conn: &Connection,
    agent_group: &AgentGroupId,
    channel_type: &str,
    platform_id: &str,
    platform_message_id: &str,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO seen_platform_messages (agent_group_id, channel_type, platform_id, platform_message_id, \
         seen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![agent_group, channel_type, platform_id, platform_message_id, now_ms()],
    )? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("crabpot.db")).unwrap();
        (dir, conn)
    }

    #[test]
    fn wiring_creates_destination_and_sessions_resolve_by_key() {
        let (_dir, conn) = db();
        let group = ensure_agent_group(&conn, "main", "Main").unwrap();
        let (chat, created) =
            ensure_messaging_group(&conn, "cli", "local", "terminal", false).unwrap();
        assert!(created);
        let wiring = NewWiring {
            session_mode: SessionMode::Shared,
            engage_mode: "pattern".into(),
            engage_pattern: Some(".*".into()),
            priority: 0,
            destination_name: "terminal".into(),
        };
        ensure_wiring(&conn, &chat, &group.id, &wiring).unwrap();
        ensure_wiring(&conn, &chat, &group.id, &wiring).unwrap();
        assert_eq!(wirings_for_chat(&conn, &chat.id).unwrap().len(), 1);
        let destinations = destinations_for(&conn, &group.id).unwrap();
        assert_eq!(destinations.len(), 1);
        assert_eq!(destinations[0].platform_id.as_deref(), Some("local"));

        let key = SessionMode::Shared.session_key(&chat.id, None);
        let (a, created_a) = resolve_session(&conn, &group.id, &key, Some(&chat.id), None).unwrap();
        let (b, created_b) = resolve_session(&conn, &group.id, &key, Some(&chat.id), None).unwrap();
        assert!(created_a && !created_b);
        assert_eq!(a.id, b.id);
        let thread_key = SessionMode::PerThread.session_key(&chat.id, Some("t1"));
        let (c, _) =
            resolve_session(&conn, &group.id, &thread_key, Some(&chat.id), Some("t1")).unwrap();
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn install_id_is_stable_and_drops_count_repeats() {
        let (_dir, conn) = db();
        let first = install_id(&conn, None).unwrap();
        assert_eq!(install_id(&conn, None).unwrap(), first);
        assert_eq!(install_id(&conn, Some("x")).unwrap(), "x");
        let drop = DropRecord {
            reason: "r".into(),
            sender: Some("u".into()),
            ..Default::default()
        };
        record_drop(&conn, &drop).unwrap();
        record_drop(&conn, &drop).unwrap();
        let count: i64 = conn
            .query_row("SELECT count FROM dropped_messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2);
        assert!(ensure_agent_group(&conn, "../x", "bad").is_err());
    }
}
