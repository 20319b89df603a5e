//! Web conversations (`web_conversations`) and their durable event logs (`web_events`), for
//! the `web` channel (`crate::channels::web`).
//!
//! A [`WebConversation`] is a chat of channel type `web` owned by one user and wired to one
//! agent group: [`ensure_conversation`] creates the chat, its wiring (shared session, every
//! message engages) and the conversation row in one transaction, after checking that the user
//! may use the group ([`may_use`]). Its log is a sequence of [`StoredEvent`]s whose ids grow
//! by one per conversation ([`append_event`]); a reader resumes after the last id it saw
//! ([`events_after`]).

use super::wirings::{EngageMode, WiringSettings};
use super::{DbError, MessagingGroup, SessionMode, text_enum};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// Where a conversation is held.
    ConversationKind {
        /// The browser's web chat.
        Browser => "browser",
        /// The OpenAI-compatible API.
        Api => "api",
    }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebConversation {
    pub id: String,
    pub user_id: String,
    pub messaging_group_id: String,
    /// The chat's platform id: `<user>/<id>` or `api/<user>/<name>`.
    pub platform_id: String,
    pub agent_group_id: AgentGroupId,
    pub kind: ConversationKind,
    pub title: String,
    /// The id of the newest event of the log (0 while it is empty).
    pub last_event_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What [`ensure_conversation`] creates when the chat is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConversation {
    pub id: String,
    pub user_id: String,
    pub platform_id: String,
    pub agent_group: AgentGroupId,
    pub kind: ConversationKind,
    pub title: String,
}

/// One event of a conversation's log: `body` is the JSON the browser gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: i64,
    pub kind: String,
    pub body: String,
    pub created_at: i64,
}

/// The most events one [`events_after`] returns.
pub const MAX_EVENTS_PER_READ: usize = 1_000;

const COLUMNS: &str = "id, user_id, messaging_group_id, platform_id, agent_group_id, kind, title, \
     next_event_id - 1, created_at, updated_at";

fn conversation_from(row: &Row<'_>) -> rusqlite::Result<WebConversation> {
    Ok(WebConversation {
        id: row.get(0)?,
        user_id: row.get(1)?,
        messaging_group_id: row.get(2)?,
        platform_id: row.get(3)?,
        agent_group_id: row.get(4)?,
        kind: row.get(5)?,
        title: row.get(6)?,
        last_event_id: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

/// A fresh conversation id: `wc-` and 16 hex digits.
pub fn new_conversation_id() -> String {
    format!("wc-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Whether `user_id` may talk to `agent_group`: a member of it, an admin of it, a global admin
/// or an owner. A group that does not exist is `NotFound`.
pub fn may_use(
    conn: &Connection,
    user_id: &str,
    agent_group: &AgentGroupId,
) -> Result<bool, DbError> {
    super::groups::agent_group(conn, agent_group)?;
    super::people::is_known(conn, user_id, agent_group)
}

/// An agent group a user may talk to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsableGroup {
    pub id: AgentGroupId,
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
}

/// The agent groups `user_id` may talk to, by id.
pub fn usable_groups(conn: &Connection, user_id: &str) -> Result<Vec<UsableGroup>, DbError> {
    let mut statement =
        conn.prepare_cached("SELECT id, name, created_at FROM agent_groups ORDER BY id")?;
    let groups = statement
        .query_map([], |row| {
            Ok(UsableGroup {
                id: row.get(0)?,
                name: row.get(1)?,
                created_at: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut usable = Vec::new();
    for group in groups {
        if super::people::is_known(conn, user_id, &group.id)? {
            usable.push(group);
        }
    }
    Ok(usable)
}

/// The most conversations one user may hold: each is a chat, a wiring and a session.
pub const MAX_CONVERSATIONS_PER_USER: i64 = 1_000;

/// The conversation at `new.platform_id`, created with its chat and wiring if missing.
/// Returns it and whether it was created. An existing conversation of another user, or of
/// another agent group, is a conflict; a user who may not use the group is refused
/// (`Invalid`), a group that does not exist is `NotFound`. Run it in a transaction.
pub fn ensure_conversation(
    conn: &Connection,
    new: &NewConversation,
) -> Result<(WebConversation, bool), DbError> {
    if let Some(existing) = by_platform_id(conn, &new.platform_id)? {
        if existing.user_id != new.user_id {
            return Err(DbError::Conflict(format!(
                "the web chat {} belongs to another user",
                new.platform_id
            )));
        }
        if existing.agent_group_id != new.agent_group {
            return Err(DbError::Conflict(format!(
                "the web chat {} talks to agent group {}, not {} (over the API, name another \
                 conversation with the request's `user` field)",
                new.platform_id, existing.agent_group_id, new.agent_group
            )));
        }
        return Ok((existing, false));
    }
    let held: i64 = conn.query_row(
        "SELECT count(*) FROM web_conversations WHERE user_id = ?1",
        [&new.user_id],
        |row| row.get(0),
    )?;
    if held >= MAX_CONVERSATIONS_PER_USER {
        return Err(DbError::Invalid(format!(
            "{} already has {MAX_CONVERSATIONS_PER_USER} web conversations, the most one user may hold",
            new.user_id
        )));
    }
    if !may_use(conn, &new.user_id, &new.agent_group)? {
        return Err(DbError::Invalid(format!(
            "{} is not a member of agent group {}",
            new.user_id, new.agent_group
        )));
    }
    let (chat, _) = super::chats::ensure_messaging_group(
        conn,
        crate::channels::web::CHANNEL_TYPE,
        &new.platform_id,
        &new.title,
        false,
    )?;
    wire(conn, &chat, &new.agent_group)?;
    let now = now_ms();
    conn.execute(
        "INSERT INTO web_conversations (id, user_id, messaging_group_id, platform_id, agent_group_id, \
         kind, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            new.id,
            new.user_id,
            chat.id,
            new.platform_id,
            new.agent_group,
            new.kind,
            new.title,
            now
        ],
    )?;
    let created = conversation(conn, &new.id)?.ok_or_else(|| DbError::NotFound {
        what: "web conversation",
        id: new.id.clone(),
    })?;
    Ok((created, true))
}

/// Wires the chat to the group (shared session, every message engages), unless it is.
fn wire(
    conn: &Connection,
    chat: &MessagingGroup,
    agent_group: &AgentGroupId,
) -> Result<(), DbError> {
    let wired = super::wirings::wirings_for_chat(conn, &chat.id)?
        .iter()
        .any(|wiring| &wiring.agent_group_id == agent_group);
    if !wired {
        let settings = WiringSettings {
            session_mode: Some(SessionMode::Shared),
            engage_mode: Some(EngageMode::Pattern),
            engage_pattern: Some(".*".into()),
            ..WiringSettings::default()
        };
        super::wirings::create_wiring(conn, chat, agent_group, &settings, None)?;
    }
    Ok(())
}

pub fn conversation(conn: &Connection, id: &str) -> Result<Option<WebConversation>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM web_conversations WHERE id = ?1"),
            [id],
            conversation_from,
        )
        .optional()?)
}

pub fn by_platform_id(
    conn: &Connection,
    platform_id: &str,
) -> Result<Option<WebConversation>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM web_conversations WHERE platform_id = ?1"),
            [platform_id],
            conversation_from,
        )
        .optional()?)
}

/// A user's conversations, the most recently active first.
pub fn list_conversations(
    conn: &Connection,
    user_id: &str,
) -> Result<Vec<WebConversation>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM web_conversations WHERE user_id = ?1 ORDER BY updated_at DESC, id"
    ))?;
    let rows = statement.query_map([user_id], conversation_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What [`append_event`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this id.
    New(i64),
    /// An event with the same `message_key` was stored before, with this id.
    Repeat(i64),
}

/// An event to append.
#[derive(Clone, Copy, Debug)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    /// The JSON the browser gets.
    pub body: &'a str,
    /// Set for an agent's message: a second event with the same key is a repeat.
    pub message_key: Option<&'a str>,
    /// The host paths of the files the message carries.
    pub files: &'a [String],
}

/// Appends an event to a conversation's log with the next id. With a `message_key` already in
/// the log, nothing is stored and the earlier event's id is returned. Run it in a
/// transaction (the id and the insert go together).
pub fn append_event(
    conn: &Connection,
    conversation_id: &str,
    event: &NewEvent<'_>,
) -> Result<Appended, DbError> {
    if let Some(key) = event.message_key {
        let earlier: Option<i64> = conn
            .query_row(
                "SELECT event_id FROM web_events WHERE conversation_id = ?1 AND message_key = ?2",
                params![conversation_id, key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(earlier) = earlier {
            return Ok(Appended::Repeat(earlier));
        }
    }
    let now = now_ms();
    let event_id: i64 = conn
        .query_row(
            "UPDATE web_conversations SET next_event_id = next_event_id + 1, updated_at = ?2 \
             WHERE id = ?1 RETURNING next_event_id - 1",
            params![conversation_id, now],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| DbError::NotFound {
            what: "web conversation",
            id: conversation_id.to_owned(),
        })?;
    let files = if event.files.is_empty() {
        None
    } else {
        Some(serde_json::to_string(event.files).map_err(|e| DbError::Invalid(e.to_string()))?)
    };
    conn.execute(
        "INSERT INTO web_events (conversation_id, event_id, kind, body, message_key, files, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![conversation_id, event_id, event.kind, event.body, event.message_key, files, now],
    )?;
    Ok(Appended::New(event_id))
}

/// The host path of file `index` of event `event_id`, if there is one.
pub fn event_file(
    conn: &Connection,
    conversation_id: &str,
    event_id: i64,
    index: usize,
) -> Result<Option<String>, DbError> {
    let files: Option<Option<String>> = conn
        .query_row(
            "SELECT files FROM web_events WHERE conversation_id = ?1 AND event_id = ?2",
            params![conversation_id, event_id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(Some(files)) = files else {
        return Ok(None);
    };
    let files: Vec<String> = serde_json::from_str(&files).unwrap_or_default();
    Ok(files.into_iter().nth(index))
}

/// The events after `after`, oldest first, at most `limit` (capped at
/// [`MAX_EVENTS_PER_READ`]).
pub fn events_after(
    conn: &Connection,
    conversation_id: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, DbError> {
    let limit = i64::try_from(limit.min(MAX_EVENTS_PER_READ)).unwrap_or(0);
    let mut statement = conn.prepare_cached(
        "SELECT event_id, kind, body, created_at FROM web_events \
         WHERE conversation_id = ?1 AND event_id > ?2 ORDER BY event_id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![conversation_id, after, limit], |row| {
        Ok(StoredEvent {
            event_id: row.get(0)?,
            kind: row.get(1)?,
            body: row.get(2)?,
            created_at: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conn = super::super::open(&dir.path().join("c.db")).unwrap_or_else(|e| panic!("{e}"));
        super::super::ensure_agent_group(&conn, "main", "Main").unwrap_or_else(|e| panic!("{e}"));
        super::super::people::create_user(&conn, "web:ann", None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        super::super::people::create_user(&conn, "web:bob", None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        super::super::people::add_member(&conn, &AgentGroupId::new("main"), "web:ann")
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, conn)
    }

    fn new(user: &str, platform_id: &str) -> NewConversation {
        NewConversation {
            id: new_conversation_id(),
            user_id: user.into(),
            platform_id: platform_id.into(),
            agent_group: AgentGroupId::new("main"),
            kind: ConversationKind::Browser,
            title: "a chat".into(),
        }
    }

    #[test]
    fn a_conversation_is_a_wired_chat_of_its_owner() {
        let (_dir, conn) = db();
        let (made, created) = ensure_conversation(&conn, &new("web:ann", "ann/one"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(created);
        let wirings = super::super::wirings_for_chat(&conn, &made.messaging_group_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wirings.len(), 1);
        assert_eq!(wirings[0].engage_pattern.as_deref(), Some(".*"));
        let (again, created) = ensure_conversation(&conn, &new("web:ann", "ann/one"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!created);
        assert_eq!(again.id, made.id);
        // Another user cannot take it, and a user who is no member cannot make one.
        assert!(matches!(
            ensure_conversation(&conn, &new("web:bob", "ann/one")),
            Err(DbError::Conflict(_))
        ));
        assert!(matches!(
            ensure_conversation(&conn, &new("web:bob", "bob/two")),
            Err(DbError::Invalid(_))
        ));
        let listed = list_conversations(&conn, "web:ann").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.len(), 1);
        assert!(
            list_conversations(&conn, "web:bob")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }

    #[test]
    fn the_log_counts_up_by_one_and_keeps_a_message_once() {
        let (_dir, conn) = db();
        let (made, _) = ensure_conversation(&conn, &new("web:ann", "ann/one"))
            .unwrap_or_else(|e| panic!("{e}"));
        let append = |kind: &str, key: Option<&str>| {
            let event = NewEvent {
                kind,
                body: "{}",
                message_key: key,
                files: &[],
            };
            append_event(&conn, &made.id, &event).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(append("message", Some("row-1#0")), Appended::New(1));
        assert_eq!(append("message", Some("row-1#1")), Appended::New(2));
        assert_eq!(append("message", Some("row-1#0")), Appended::Repeat(1));
        assert_eq!(append("turn_complete", None), Appended::New(3));
        let after_one = events_after(&conn, &made.id, 1, 100).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<i64> = after_one.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(after_one[1].kind, "turn_complete");
        let limited = events_after(&conn, &made.id, 0, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limited.len(), 2);
        let conversation = conversation(&conn, &made.id)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("gone"));
        assert_eq!(conversation.last_event_id, 3);
        let orphan = NewEvent {
            kind: "message",
            body: "{}",
            message_key: None,
            files: &[],
        };
        assert!(matches!(
            append_event(&conn, "wc-none", &orphan),
            Err(DbError::NotFound { .. })
        ));
        // A message's files are kept by index, apart from its body.
        let paths = vec![
            "/data/files/a.txt".to_owned(),
            "/data/files/b.png".to_owned(),
        ];
        let with_files = NewEvent {
            kind: "message",
            body: "{}",
            message_key: None,
            files: &paths,
        };
        let Appended::New(id) = append_event(&conn, &made.id, &with_files).unwrap() else {
            panic!("a repeat")
        };
        let file = |index| event_file(&conn, &made.id, id, index).unwrap();
        assert_eq!(file(1).as_deref(), Some("/data/files/b.png"));
        assert_eq!(file(2), None);
        assert_eq!(event_file(&conn, &made.id, 1, 0).unwrap(), None);
    }
}
