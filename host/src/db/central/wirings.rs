//! Wirings (`wirings`): which chats reach which agent groups, and how — [`Wiring`] with its
//! [`SessionMode`], [`EngageMode`], [`SenderScope`] and [`IgnoredMessagePolicy`]; plus the
//! threads where a `mention-sticky` wiring keeps listening (`sticky_threads`).
//!
//! A wiring's engage settings are validated when saved ([`validate_engage`]): mode `pattern`
//! needs a pattern that compiles, so a missing or invalid regex can never match everything.
//! Creating a wiring also creates the group's destination for the chat (unique by name).

use super::destinations;
use super::sessions::SessionMode;
use super::{DbError, MessagingGroup, constraint, text_enum};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// When a message wakes the agent.
    EngageMode {
        /// When the text matches `engage_pattern` (a regex).
        Pattern => "pattern",
        /// When the agent is mentioned (every message of a direct chat counts).
        Mention => "mention",
        /// Like `mention`; after a mention in a thread, the thread's session keeps listening.
        MentionSticky => "mention-sticky",
    }
);
text_enum!(
    /// Which senders a wiring accepts.
    SenderScope { All => "all", Known => "known" }
);
text_enum!(
    /// What happens to a message that does not engage: dropped, or kept as context.
    IgnoredMessagePolicy { Drop => "drop", Accumulate => "accumulate" }
);

/// Longest engage pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Compiled-size cap of an engage pattern (the regex crate's size limit).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wiring {
    pub id: String,
    pub messaging_group_id: String,
    pub agent_group_id: AgentGroupId,
    pub session_mode: SessionMode,
    pub engage_mode: EngageMode,
    pub engage_pattern: Option<String>,
    pub sender_scope: SenderScope,
    pub ignored_message_policy: IgnoredMessagePolicy,
    pub priority: i64,
}

/// Compiles an engage pattern with the size caps used everywhere.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, DbError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(DbError::Invalid(format!(
            "the engage pattern is {} bytes, over the cap of {MAX_PATTERN_BYTES}",
            pattern.len()
        )));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            DbError::Invalid(format!(
                "the engage pattern {pattern:?} is not a valid regex: {e}"
            ))
        })
}

/// Checks that an engage mode and pattern go together and that the pattern compiles.
pub fn validate_engage(mode: EngageMode, pattern: Option<&str>) -> Result<(), DbError> {
    match (mode, pattern) {
        (EngageMode::Pattern, None) => Err(DbError::Invalid(
            "engage mode pattern needs a pattern (use '.*' to engage on every message)".into(),
        )),
        (EngageMode::Pattern, Some(pattern)) => compile_pattern(pattern).map(|_| ()),
        (EngageMode::Mention | EngageMode::MentionSticky, None) => Ok(()),
        (EngageMode::Mention | EngageMode::MentionSticky, Some(_)) => Err(DbError::Invalid(
            format!("a pattern only applies to engage mode pattern, not {mode}"),
        )),
    }
}

/// What a new wiring says; used at bootstrap, where the chat is known to be fresh.
#[derive(Clone, Debug)]
pub struct NewWiring {
    pub session_mode: SessionMode,
    /// An [`EngageMode`] value (`pattern`, `mention`, `mention-sticky`), checked on save.
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
    let engage_mode: EngageMode = wiring.engage_mode.parse().map_err(DbError::Invalid)?;
    validate_engage(engage_mode, wiring.engage_pattern.as_deref())?;
    conn.execute(
        "INSERT OR IGNORE INTO wirings (id, messaging_group_id, agent_group_id, session_mode, engage_mode, \
         engage_pattern, priority, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            new_id(),
            chat.id,
            agent_group,
            wiring.session_mode,
            engage_mode,
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
    wiring_between(conn, &chat.id, agent_group)
}

fn new_id() -> String {
    super::short_id("w")
}

const COLUMNS: &str = "id, messaging_group_id, agent_group_id, session_mode, engage_mode, engage_pattern, \
     sender_scope, ignored_message_policy, priority";

fn wiring_from(row: &Row<'_>) -> rusqlite::Result<Wiring> {
    Ok(Wiring {
        id: row.get(0)?,
        messaging_group_id: row.get(1)?,
        agent_group_id: row.get(2)?,
        session_mode: row.get(3)?,
        engage_mode: row.get(4)?,
        engage_pattern: row.get(5)?,
        sender_scope: row.get(6)?,
        ignored_message_policy: row.get(7)?,
        priority: row.get(8)?,
    })
}

/// The wirings of a chat, highest priority first.
pub fn wirings_for_chat(
    conn: &Connection,
    messaging_group_id: &str,
) -> Result<Vec<Wiring>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM wirings WHERE messaging_group_id = ?1 ORDER BY priority DESC, created_at, rowid"
    ))?;
    let rows = statement.query_map([messaging_group_id], wiring_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every wiring, optionally only those of one chat or one agent group.
pub fn list_wirings(
    conn: &Connection,
    chat: Option<&str>,
    agent_group: Option<&AgentGroupId>,
) -> Result<Vec<Wiring>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM wirings WHERE (?1 IS NULL OR messaging_group_id = ?1) \
         AND (?2 IS NULL OR agent_group_id = ?2) ORDER BY messaging_group_id, priority DESC, created_at, rowid"
    ))?;
    let rows = statement.query_map(params![chat, agent_group], wiring_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn wiring(conn: &Connection, id: &str) -> Result<Wiring, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM wirings WHERE id = ?1"),
        [id],
        wiring_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "wiring",
        id: id.to_owned(),
    })
}

fn wiring_between(
    conn: &Connection,
    chat_id: &str,
    agent_group: &AgentGroupId,
) -> Result<Wiring, DbError> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM wirings WHERE messaging_group_id = ?1 AND agent_group_id = ?2"
        ),
        params![chat_id, agent_group],
        wiring_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "wiring",
        id: format!("{chat_id} x {agent_group}"),
    })
}

/// A wiring's settings, every one optional: `None` keeps the default (on create) or the
/// stored value (on update).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WiringSettings {
    pub session_mode: Option<SessionMode>,
    pub engage_mode: Option<EngageMode>,
    /// `Some("")` on update clears the pattern.
    pub engage_pattern: Option<String>,
    pub sender_scope: Option<SenderScope>,
    pub ignored_message_policy: Option<IgnoredMessagePolicy>,
    pub priority: Option<i64>,
}

/// Wires `chat` to `agent_group` and creates the group's destination for the chat, named
/// `destination_name` (a clash is a conflict) or after the chat (made unique). Returns the
/// wiring and the destination name.
pub fn create_wiring(
    conn: &Connection,
    chat: &MessagingGroup,
    agent_group: &AgentGroupId,
    settings: &WiringSettings,
    destination_name: Option<&str>,
) -> Result<(Wiring, String), DbError> {
    super::groups::agent_group(conn, agent_group)?;
    let engage_mode = settings.engage_mode.unwrap_or(EngageMode::Mention);
    let pattern = settings.engage_pattern.as_deref().filter(|p| !p.is_empty());
    validate_engage(engage_mode, pattern)?;
    conn.execute(
        "INSERT INTO wirings (id, messaging_group_id, agent_group_id, session_mode, engage_mode, engage_pattern, \
         sender_scope, ignored_message_policy, priority, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            new_id(),
            chat.id,
            agent_group,
            settings.session_mode.unwrap_or(SessionMode::Shared),
            engage_mode,
            pattern,
            settings.sender_scope.unwrap_or(SenderScope::All),
            settings.ignored_message_policy.unwrap_or(IgnoredMessagePolicy::Drop),
            settings.priority.unwrap_or(0),
            now_ms()
        ],
    )
    .map_err(|e| {
        constraint(e, || {
            format!("chat {} is already wired to agent group {agent_group}", chat.address())
        })
    })?;
    let name = destinations::ensure_chat_destination(conn, agent_group, chat, destination_name)?;
    Ok((wiring_between(conn, &chat.id, agent_group)?, name))
}

/// Changes a wiring's settings; the merged engage settings are validated again.
pub fn update_wiring(
    conn: &Connection,
    id: &str,
    settings: &WiringSettings,
) -> Result<Wiring, DbError> {
    let current = wiring(conn, id)?;
    let engage_mode = settings.engage_mode.unwrap_or(current.engage_mode);
    let pattern = match &settings.engage_pattern {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
        // Switching to a mention mode drops a stored pattern rather than refusing.
        None if engage_mode != EngageMode::Pattern => None,
        None => current.engage_pattern.clone(),
    };
    validate_engage(engage_mode, pattern.as_deref())?;
    conn.execute(
        "UPDATE wirings SET session_mode = ?2, engage_mode = ?3, engage_pattern = ?4, sender_scope = ?5, \
         ignored_message_policy = ?6, priority = ?7 WHERE id = ?1",
        params![
            id,
            settings.session_mode.unwrap_or(current.session_mode),
            engage_mode,
            pattern,
            settings.sender_scope.unwrap_or(current.sender_scope),
            settings
                .ignored_message_policy
                .unwrap_or(current.ignored_message_policy),
            settings.priority.unwrap_or(current.priority),
        ],
    )?;
    wiring(conn, id)
}

/// Deletes a wiring. The group's destination for the chat stays (remove it with
/// `destinations remove`): unwiring stops inbound messages, not the agent's permission to send.
pub fn delete_wiring(conn: &Connection, id: &str) -> Result<Wiring, DbError> {
    let found = wiring(conn, id)?;
    conn.execute("DELETE FROM wirings WHERE id = ?1", [id])?;
    Ok(found)
}

/// Remembers that a `mention-sticky` wiring was mentioned in `thread_id`.
pub fn mark_sticky(conn: &Connection, wiring_id: &str, thread_id: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO sticky_threads (wiring_id, thread_id, created_at) VALUES (?1, ?2, ?3)",
        params![wiring_id, thread_id, now_ms()],
    )?;
    Ok(())
}

/// Whether a `mention-sticky` wiring keeps listening in `thread_id`.
pub fn is_sticky(conn: &Connection, wiring_id: &str, thread_id: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sticky_threads WHERE wiring_id = ?1 AND thread_id = ?2",
            params![wiring_id, thread_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engage_validation() {
        use EngageMode::*;
        for (mode, pattern, ok) in [
            (Pattern, Some(".*"), true),
            (Pattern, Some("(?i)^hey crab"), true),
            (Pattern, None, false),
            (Pattern, Some("(unclosed"), false),
            (Pattern, Some("[z-a]"), false),
            (Mention, None, true),
            (MentionSticky, None, true),
            (Mention, Some("x"), false),
        ] {
            assert_eq!(
                validate_engage(mode, pattern).is_ok(),
                ok,
                "{mode} {pattern:?}"
            );
        }
        let huge = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(validate_engage(Pattern, Some(&huge)).is_err());
        // A pattern that is small but compiles huge is refused too.
        assert!(validate_engage(Pattern, Some("\\w{1000}\\w{1000}\\w{1000}")).is_err());
    }
}
