//! Scheduled tasks as the central DB knows them: which session holds which task (`tasks`; the
//! task's rows themselves live in that session's `inbound.db`), and when each session's
//! earliest scheduled row comes due (`sessions.next_due_at`), so the sweep can wake sessions
//! that have no container ([`due_sessions`]).

use super::DbError;
use protocol::time::now_ms;
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// One task of the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub task_id: String,
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    /// The agent group's folder (to find the session's files).
    pub group_folder: String,
    pub created_at: i64,
}

/// Notes that `session` holds `task_id` (idempotent).
pub fn add_task(
    conn: &Connection,
    task_id: &str,
    session: &SessionId,
    agent_group: &AgentGroupId,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO tasks (task_id, session_id, agent_group_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![task_id, session, agent_group, now_ms()],
    )?;
    Ok(())
}

const SELECT: &str = "SELECT t.task_id, t.session_id, t.agent_group_id, g.folder, t.created_at FROM tasks t \
     JOIN agent_groups g ON g.id = t.agent_group_id";

fn entries(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<TaskEntry>, DbError> {
    let mut statement = conn.prepare_cached(&format!(
        "{SELECT} {filter} ORDER BY t.created_at, t.task_id"
    ))?;
    let rows = statement.query_map(params, |row| {
        Ok(TaskEntry {
            task_id: row.get(0)?,
            session_id: row.get(1)?,
            agent_group_id: row.get(2)?,
            group_folder: row.get(3)?,
            created_at: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every task, optionally of one agent group, oldest first.
pub fn list_tasks(
    conn: &Connection,
    agent_group: Option<&AgentGroupId>,
) -> Result<Vec<TaskEntry>, DbError> {
    entries(
        conn,
        "WHERE ?1 IS NULL OR t.agent_group_id = ?1",
        [agent_group],
    )
}

/// The sessions holding a task id (normally one: ids are random).
pub fn find_task(conn: &Connection, task_id: &str) -> Result<Vec<TaskEntry>, DbError> {
    entries(conn, "WHERE t.task_id = ?1", [task_id])
}

/// Mirrors the earliest time a scheduled row of the session comes due (`None`: none left).
pub fn set_next_due(
    conn: &Connection,
    session: &SessionId,
    next_due_at: Option<i64>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE sessions SET next_due_at = ?2 WHERE id = ?1",
        params![session, next_due_at],
    )?;
    Ok(())
}

/// Sessions whose earliest scheduled row is due by `now`: (session, group, group folder).
pub fn due_sessions(
    conn: &Connection,
    now: i64,
) -> Result<Vec<(SessionId, AgentGroupId, String)>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT s.id, s.agent_group_id, g.folder FROM sessions s JOIN agent_groups g ON g.id = s.agent_group_id \
         WHERE s.next_due_at IS NOT NULL AND s.next_due_at <= ?1 ORDER BY s.next_due_at LIMIT 1000",
    )?;
    let rows = statement.query_map([now], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
