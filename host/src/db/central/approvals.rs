//! Approvals (`approvals`, `approval_log`): [`Approval`] records what a decision is for
//! ([`ApprovalKind`]: let an unknown sender in, or wire an unwired chat), who may decide
//! (`approvers`), when it expires, the messages held until then, and how it ended
//! ([`ApprovalStatus`]). Every decision attempt, accepted or refused, is a [`LogEntry`].
//!
//! The rules (who may decide, what a decision does) live in `crate::router::approvals`;
//! this file only stores.

use super::{DbError, text_enum};
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(
    /// What an approval decides.
    ApprovalKind {
        /// An unknown sender wrote to a chat whose policy is `request_approval`.
        Sender => "sender",
        /// Someone mentioned the agent (or wrote a DM) in a chat that is not wired.
        Channel => "channel",
        /// An agent asked for a child agent (`create_agent`); `payload` says what it asked.
        CreateAgent => "create_agent",
    }
);
text_enum!(
    /// Where an approval stands.
    ApprovalStatus { Pending => "pending", Approved => "approved", Denied => "denied", Expired => "expired" }
);

/// Most messages held by one approval; later ones are dropped (and recorded).
pub const MAX_HELD: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub kind: ApprovalKind,
    pub status: ApprovalStatus,
    pub agent_group_id: Option<AgentGroupId>,
    pub messaging_group_id: Option<String>,
    /// The sender the approval is about (a user id).
    pub requester: String,
    /// What it is for, in words.
    pub summary: String,
    /// User ids who may decide (the operator always may).
    pub approvers: Vec<String>,
    /// The held inbound events, as JSON.
    pub held: Vec<serde_json::Value>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// What a `create_agent` approval creates (see `crate::agents::ChildRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// One decision attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
}

/// What a new approval says.
#[derive(Clone, Debug)]
pub struct NewApproval {
    pub kind: ApprovalKind,
    pub agent_group_id: Option<AgentGroupId>,
    pub messaging_group_id: Option<String>,
    pub requester: String,
    pub summary: String,
    pub approvers: Vec<String>,
    /// The first held inbound event (none for a `create_agent` approval).
    pub held: Option<serde_json::Value>,
    /// What a `create_agent` approval creates.
    pub payload: Option<serde_json::Value>,
    /// How long it stays open, in milliseconds.
    pub ttl_ms: i64,
}

const COLUMNS: &str = "id, kind, status, agent_group_id, messaging_group_id, requester, summary, approvers, held, \
     created_at, expires_at, decided_by, decided_at, reason, payload";

fn approval_from(row: &Row<'_>) -> rusqlite::Result<Approval> {
    let json_list = |index: usize| -> rusqlite::Result<Vec<serde_json::Value>> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(Approval {
        id: row.get(0)?,
        kind: row.get(1)?,
        status: row.get(2)?,
        agent_group_id: row.get(3)?,
        messaging_group_id: row.get(4)?,
        requester: row.get(5)?,
        summary: row.get(6)?,
        approvers: json_list(7)?
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        held: json_list(8)?,
        created_at: row.get(9)?,
        expires_at: row.get(10)?,
        decided_by: row.get(11)?,
        decided_at: row.get(12)?,
        reason: row.get(13)?,
        payload: row
            .get::<_, Option<String>>(14)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

pub fn create_approval(conn: &Connection, new: &NewApproval) -> Result<Approval, DbError> {
    let id = super::short_id("ap");
    let now = now_ms();
    let approvers = serde_json::to_string(&new.approvers).unwrap_or_else(|_| "[]".into());
    let held_events: Vec<&serde_json::Value> = new.held.iter().collect();
    let held = serde_json::to_string(&held_events).unwrap_or_else(|_| "[]".into());
    let payload = new.payload.as_ref().map(serde_json::Value::to_string);
    conn.execute(
        "INSERT INTO approvals (id, kind, agent_group_id, messaging_group_id, requester, summary, approvers, held, \
         created_at, expires_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            new.kind,
            new.agent_group_id,
            new.messaging_group_id,
            new.requester,
            new.summary,
            approvers,
            held,
            now,
            now.saturating_add(new.ttl_ms),
            payload
        ],
    )?;
    approval(conn, &id)
}

pub fn approval(conn: &Connection, id: &str) -> Result<Approval, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        [id],
        approval_from,
    )
    .optional()?
    .ok_or_else(|| DbError::NotFound {
        what: "approval",
        id: id.to_owned(),
    })
}

/// The open approval for a sender and agent group, if any.
pub fn pending_for_sender(
    conn: &Connection,
    agent_group: &AgentGroupId,
    requester: &str,
) -> Result<Option<Approval>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM approvals WHERE kind = 'sender' AND status = 'pending' \
                 AND agent_group_id = ?1 AND requester = ?2 AND expires_at > ?3 ORDER BY created_at DESC LIMIT 1"
            ),
            params![agent_group, requester, now_ms()],
            approval_from,
        )
        .optional()?)
}

/// The open registration approval for a chat, if any.
pub fn pending_for_chat(conn: &Connection, chat: &str) -> Result<Option<Approval>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM approvals WHERE kind = 'channel' AND status = 'pending' \
                 AND messaging_group_id = ?1 AND expires_at > ?2 ORDER BY created_at DESC LIMIT 1"
            ),
            params![chat, now_ms()],
            approval_from,
        )
        .optional()?)
}

/// The open `create_agent` approval of an agent group for a child named `name`, if any.
pub fn pending_create_agent(
    conn: &Connection,
    agent_group: &AgentGroupId,
    name: &str,
) -> Result<Option<Approval>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM approvals WHERE kind = 'create_agent' AND status = 'pending' \
                 AND agent_group_id = ?1 AND json_extract(payload, '$.name') = ?2 AND expires_at > ?3 \
                 ORDER BY created_at DESC LIMIT 1"
            ),
            params![agent_group, name, now_ms()],
            approval_from,
        )
        .optional()?)
}

/// Whether the latest decided sender approval for this sender and group was a denial.
pub fn sender_denied(
    conn: &Connection,
    agent_group: &AgentGroupId,
    requester: &str,
) -> Result<bool, DbError> {
    let status: Option<ApprovalStatus> = conn
        .query_row(
            "SELECT status FROM approvals WHERE kind = 'sender' AND agent_group_id = ?1 AND requester = ?2 \
             AND status IN ('approved', 'denied') ORDER BY decided_at DESC LIMIT 1",
            params![agent_group, requester],
            |row| row.get(0),
        )
        .optional()?;
    Ok(status == Some(ApprovalStatus::Denied))
}

/// Adds a held event to an open approval. `Ok(false)` when it already holds
/// [`MAX_HELD`] events.
pub fn append_held(
    conn: &Connection,
    id: &str,
    event: &serde_json::Value,
) -> Result<bool, DbError> {
    let mut held = approval(conn, id)?.held;
    if held.len() >= MAX_HELD {
        return Ok(false);
    }
    held.push(event.clone());
    let json = serde_json::to_string(&held).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE approvals SET held = ?2 WHERE id = ?1",
        params![id, json],
    )?;
    Ok(true)
}

/// Marks open approvals past their expiry `expired`; returns how many.
pub fn expire_due(conn: &Connection, now: i64) -> Result<usize, DbError> {
    Ok(conn.execute(
        "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= ?1",
        [now],
    )?)
}

/// Open approvals (or all of them), newest first.
pub fn list_approvals(conn: &Connection, all: bool) -> Result<Vec<Approval>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE ?1 OR status = 'pending' ORDER BY created_at DESC, id"
    ))?;
    let rows = statement.query_map([all], approval_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records the decision.
pub fn set_decided(
    conn: &Connection,
    id: &str,
    status: ApprovalStatus,
    decided_by: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, reason = ?5, held = '[]' WHERE id = ?1",
        params![id, status, decided_by, now_ms(), reason],
    )?;
    Ok(())
}

/// Appends to an approval's decision log.
pub fn log(
    conn: &Connection,
    id: &str,
    actor: &str,
    action: &str,
    outcome: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO approval_log (approval_id, at, actor, action, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, now_ms(), actor, action, outcome],
    )?;
    Ok(())
}

pub fn log_entries(conn: &Connection, id: &str) -> Result<Vec<LogEntry>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT at, actor, action, outcome FROM approval_log WHERE approval_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([id], |row| {
        Ok(LogEntry {
            at: row.get(0)?,
            actor: row.get(1)?,
            action: row.get(2)?,
            outcome: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
