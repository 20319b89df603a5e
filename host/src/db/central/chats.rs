//! Chats (`messaging_groups`): [`MessagingGroup`] with its [`UnknownSenderPolicy`].
//!
//! A chat is named either by its id (`mg-...`) or by its address `<channel_type>/<platform_id>`
//! ([`find_chat`]), so people can type `cli/room-1`.

use super::{DbError, constraint, text_enum};
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// What happens to a message from a sender the agent group does not know.
    UnknownSenderPolicy {
        /// Dropped and recorded.
        Strict => "strict",
        /// Held; an approver is asked; approval makes the sender a member and replays it.
        RequestApproval => "request_approval",
        /// Let through (a wiring with sender scope `known` still drops it).
        Public => "public",
    }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagingGroup {
    pub id: String,
    pub channel_type: String,
    pub platform_id: String,
    pub name: String,
    pub is_group: bool,
    pub unknown_sender_policy: UnknownSenderPolicy,
}

impl MessagingGroup {
    /// `<channel_type>/<platform_id>`.
    pub fn address(&self) -> String {
        format!("{}/{}", self.channel_type, self.platform_id)
    }
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

const COLUMNS: &str = "id, channel_type, platform_id, name, is_group, unknown_sender_policy";

/// The chat stored for (`channel_type`, `platform_id`), created if missing (public, as the
/// adapter describes it). Returns it and whether it was created.
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
        params![new_id(), channel_type, platform_id, name, is_group, now_ms()],
    )? > 0;
    let group = by_address(conn, channel_type, platform_id)?.ok_or_else(|| DbError::NotFound {
        what: "chat",
        id: format!("{channel_type}/{platform_id}"),
    })?;
    Ok((group, created))
}

fn new_id() -> String {
    format!("mg-{}", uuid::Uuid::now_v7().simple())
}

fn by_address(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
) -> Result<Option<MessagingGroup>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM messaging_groups WHERE channel_type = ?1 AND platform_id = ?2"
            ),
            params![channel_type, platform_id],
            messaging_group_from,
        )
        .optional()?)
}

pub fn messaging_group(conn: &Connection, id: &str) -> Result<MessagingGroup, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM messaging_groups WHERE id = ?1"),
        [id],
        messaging_group_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "chat",
        id: id.to_owned(),
    })
}

/// A chat by id, or by its address `<channel_type>/<platform_id>`.
pub fn find_chat(conn: &Connection, reference: &str) -> Result<MessagingGroup, DbError> {
    if let Some((channel_type, platform_id)) = reference.split_once('/')
        && let Some(chat) = by_address(conn, channel_type, platform_id)?
    {
        return Ok(chat);
    }
    messaging_group(conn, reference)
}

pub fn list_chats(conn: &Connection) -> Result<Vec<MessagingGroup>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messaging_groups ORDER BY channel_type, platform_id"
    ))?;
    let rows = statement.query_map([], messaging_group_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a new chat says.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NewChat {
    pub channel_type: String,
    pub platform_id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub is_group: bool,
    pub unknown_sender_policy: Option<UnknownSenderPolicy>,
}

pub fn create_chat(conn: &Connection, chat: &NewChat) -> Result<MessagingGroup, DbError> {
    let bad =
        |value: &str| value.is_empty() || value.len() > 256 || value.chars().any(char::is_control);
    if bad(&chat.channel_type) || chat.channel_type.contains('/') {
        return Err(DbError::Invalid(format!(
            "channel type {:?} must be 1-256 printable characters without '/'",
            chat.channel_type
        )));
    }
    if bad(&chat.platform_id) {
        return Err(DbError::Invalid(format!(
            "platform id {:?} must be 1-256 printable characters",
            chat.platform_id
        )));
    }
    let name = chat
        .name
        .clone()
        .unwrap_or_else(|| chat.platform_id.clone());
    conn.execute(
        "INSERT INTO messaging_groups (id, channel_type, platform_id, name, is_group, unknown_sender_policy, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new_id(),
            chat.channel_type,
            chat.platform_id,
            name,
            chat.is_group,
            chat.unknown_sender_policy.unwrap_or(UnknownSenderPolicy::Public),
            now_ms()
        ],
    )
    .map_err(|e| {
        constraint(e, || {
            format!("chat {}/{} already exists", chat.channel_type, chat.platform_id)
        })
    })?;
    find_chat(conn, &format!("{}/{}", chat.channel_type, chat.platform_id))
}

/// What `chats update` may change.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatChanges {
    pub name: Option<String>,
    pub is_group: Option<bool>,
    pub unknown_sender_policy: Option<UnknownSenderPolicy>,
}

pub fn update_chat(
    conn: &Connection,
    reference: &str,
    changes: &ChatChanges,
) -> Result<MessagingGroup, DbError> {
    let chat = find_chat(conn, reference)?;
    conn.execute(
        "UPDATE messaging_groups SET name = coalesce(?2, name), is_group = coalesce(?3, is_group), \
         unknown_sender_policy = coalesce(?4, unknown_sender_policy) WHERE id = ?1",
        params![
            chat.id,
            changes.name,
            changes.is_group,
            changes.unknown_sender_policy
        ],
    )?;
    messaging_group(conn, &chat.id)
}

/// Deletes a chat with its wirings and the destinations that name it.
pub fn delete_chat(conn: &Connection, reference: &str) -> Result<MessagingGroup, DbError> {
    let chat = find_chat(conn, reference)?;
    conn.execute("DELETE FROM messaging_groups WHERE id = ?1", [&chat.id])?;
    Ok(chat)
}
