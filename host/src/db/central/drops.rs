//! What was not delivered: `dropped_messages` ([`DropRecord`], inbound and outbound, with a
//! reason, counted per key with first and last sighting) and `seen_platform_messages`
//! ([`first_sighting`]: a platform message id is stored once per agent group).

use super::DbError;
use protocol::time::now_ms;
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

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

/// One row of `crabpot dropped list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedRow {
    pub direction: String,
    pub reason: String,
    pub chat: Option<String>,
    pub sender: Option<String>,
    pub agent_group_id: Option<String>,
    pub session_id: Option<String>,
    pub message_id: Option<String>,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// The most recent drops first, at most `limit`.
pub fn list_drops(conn: &Connection, limit: i64) -> Result<Vec<DroppedRow>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT direction, reason, channel_type, platform_id, sender, agent_group_id, session_id, message_id, count, \
         first_seen, last_seen FROM dropped_messages ORDER BY last_seen DESC, id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit], |row| {
        let channel: Option<String> = row.get(2)?;
        let platform: Option<String> = row.get(3)?;
        Ok(DroppedRow {
            direction: row.get(0)?,
            reason: row.get(1)?,
            chat: channel.zip(platform).map(|(c, p)| format!("{c}/{p}")),
            sender: row.get(4)?,
            agent_group_id: row.get(5)?,
            session_id: row.get(6)?,
            message_id: row.get(7)?,
            count: row.get(8)?,
            first_seen: row.get(9)?,
            last_seen: row.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
