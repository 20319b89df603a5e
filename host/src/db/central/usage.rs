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
    /// The token counts are the host's estimate: the model server reported none.
    pub estimated: bool,
}

/// A session's usage over all its models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotals {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// How many of the requests failed or broke off before their reply's end.
    pub failed_requests: i64,
    /// How many of the requests have estimated token counts.
    pub estimated_requests: i64,
}

pub fn record_usage(conn: &Connection, usage: &UsageRow) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO usage (session_id, agent_group_id, model, requests, failed, input_tokens, output_tokens, estimated, updated_at) \
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (session_id, model) DO UPDATE SET \
         requests = requests + 1, failed = failed + excluded.failed, input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, estimated = estimated + excluded.estimated, \
         updated_at = excluded.updated_at",
        params![
            usage.session_id,
            usage.agent_group_id,
            usage.model,
            i64::from(usage.failed),
            usage.input_tokens,
            usage.output_tokens,
            i64::from(usage.estimated),
            now_ms()
        ],
    )?;
    Ok(())
}

/// A session's usage totals.
pub fn session_usage(conn: &Connection, session: &SessionId) -> Result<UsageTotals, DbError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), \
         coalesce(sum(failed), 0), coalesce(sum(estimated), 0) FROM usage WHERE session_id = ?1",
        [session],
        |r| {
            Ok(UsageTotals {
                requests: r.get(0)?,
                input_tokens: r.get(1)?,
                output_tokens: r.get(2)?,
                failed_requests: r.get(3)?,
                estimated_requests: r.get(4)?,
            })
        },
    )?)
}
