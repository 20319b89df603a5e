//! Model usage per session and model (`usage`), written from the proxy's reports.

use super::DbError;
use protocol::time::now_ms;
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, params};

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
