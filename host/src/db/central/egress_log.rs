//! The egress log (`egress_log`): one [`EgressAttempt`] per connection or request a container
//! made through its proxy socket, allowed or refused, with its [`AttemptKind`] and
//! [`Outcome`]. Written by the proxy's egress recorder ([`record_attempt`], which also keeps
//! the table to the newest [`MAX_ROWS`]); read by `crabpot egress log` ([`list_attempts`] with
//! an [`EgressLogQuery`]).

use super::{DbError, text_enum};
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

/// The most rows kept: older ones are deleted as new ones arrive, so a container that floods
/// the proxy with attempts cannot grow the central DB without bound.
pub const MAX_ROWS: i64 = 100_000;

text_enum!(
    /// How the container reached out.
    AttemptKind {
        /// `CONNECT host:port`, a tunnel (HTTPS, git over TLS, anything over TCP).
        Connect => "connect",
        /// A plain HTTP request in absolute form (`GET http://host/path`).
        Http => "http",
        /// The `web_fetch` tool, fetched by the host.
        Fetch => "fetch",
        /// The `web_search` tool, against the host's search backend.
        Search => "search",
    }
);

text_enum!(
    /// What became of an attempt.
    Outcome {
        /// Allowed and connected; the bytes say how much went through.
        Allowed => "allowed",
        /// No allow rule of the group covers the host and port.
        NotListed => "not_listed",
        /// A deny rule of the group covers the host and port.
        DeniedRule => "denied_rule",
        /// The destination is a private, loopback or link-local address that no rule names.
        InternalAddress => "internal_address",
        /// The host name did not resolve.
        LookupFailed => "lookup_failed",
        /// Allowed, but the destination did not accept the connection in time.
        ConnectFailed => "connect_failed",
    }
);

/// One attempt, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressAttempt {
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    /// The host as the container named it (a name or an address literal).
    pub host: String,
    pub port: u16,
    pub kind: AttemptKind,
    pub outcome: Outcome,
    /// The rule that allowed it, or why it was refused, for people.
    pub detail: String,
    /// Bytes from the container to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the container.
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// When the attempt started (ms since the epoch).
    pub at_ms: i64,
}

impl EgressAttempt {
    /// A new attempt starting now, refused as not listed until told otherwise.
    pub fn new(
        session_id: SessionId,
        agent_group_id: AgentGroupId,
        host: &str,
        port: u16,
        kind: AttemptKind,
    ) -> Self {
        Self {
            session_id,
            agent_group_id,
            host: host.to_owned(),
            port,
            kind,
            outcome: Outcome::NotListed,
            detail: String::new(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            at_ms: protocol::time::now_ms(),
        }
    }
}

/// Which attempts `crabpot egress log` lists: the newest first, optionally of one session or
/// one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressLogQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// One listed attempt: the record and its row id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressLogEntry {
    pub id: i64,
    /// `at_ms` as an RFC 3339 time (UTC), for people.
    pub at: String,
    #[serde(flatten)]
    pub attempt: EgressAttempt,
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Records one attempt and deletes what falls out of the newest [`MAX_ROWS`].
pub fn record_attempt(conn: &Connection, attempt: &EgressAttempt) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO egress_log (session_id, agent_group_id, host, port, kind, outcome, detail, \
         bytes_up, bytes_down, duration_ms, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            attempt.session_id,
            attempt.agent_group_id,
            attempt.host,
            attempt.port,
            attempt.kind,
            attempt.outcome,
            attempt.detail,
            saturating_i64(attempt.bytes_up),
            saturating_i64(attempt.bytes_down),
            saturating_i64(attempt.duration_ms),
            attempt.at_ms,
        ],
    )?;
    let newest = conn.last_insert_rowid();
    // Row ids only grow, so everything at or below `newest - MAX_ROWS` is older than the
    // newest MAX_ROWS rows; the primary key makes this a range delete.
    conn.execute(
        "DELETE FROM egress_log WHERE id <= ?1",
        [newest.saturating_sub(MAX_ROWS)],
    )?;
    Ok(())
}

fn entry_from(row: &Row<'_>) -> rusqlite::Result<EgressLogEntry> {
    let non_negative = |index: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or(0))
    };
    let at_ms: i64 = row.get(11)?;
    Ok(EgressLogEntry {
        id: row.get(0)?,
        at: chrono::DateTime::from_timestamp_millis(at_ms)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        attempt: EgressAttempt {
            session_id: row.get(1)?,
            agent_group_id: row.get(2)?,
            host: row.get(3)?,
            port: row.get(4)?,
            kind: row.get(5)?,
            outcome: row.get(6)?,
            detail: row.get(7)?,
            bytes_up: non_negative(8)?,
            bytes_down: non_negative(9)?,
            duration_ms: non_negative(10)?,
            at_ms,
        },
    })
}

/// The newest attempts matching `query`, newest first.
pub fn list_attempts(
    conn: &Connection,
    query: &EgressLogQuery,
) -> Result<Vec<EgressLogEntry>, DbError> {
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_ROWS);
    let mut statement = conn.prepare(
        "SELECT id, session_id, agent_group_id, host, port, kind, outcome, detail, bytes_up, \
         bytes_down, duration_ms, at_ms FROM egress_log \
         WHERE (?1 IS NULL OR session_id = ?1) AND (?2 IS NULL OR agent_group_id = ?2) \
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![query.session, query.group, limit], entry_from)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(session: &str, group: &str, host: &str, outcome: Outcome) -> EgressAttempt {
        let mut attempt = EgressAttempt::new(
            SessionId::new(session),
            AgentGroupId::new(group),
            host,
            443,
            AttemptKind::Connect,
        );
        attempt.outcome = outcome;
        attempt.bytes_up = 10;
        attempt.bytes_down = 20;
        attempt
    }

    #[test]
    fn attempts_are_listed_newest_first_and_filtered() {
        let (_dir, conn) = super::super::tests::db();
        record_attempt(&conn, &attempt("s1", "main", "a.example", Outcome::Allowed)).unwrap();
        record_attempt(
            &conn,
            &attempt("s2", "main", "b.example", Outcome::NotListed),
        )
        .unwrap();
        record_attempt(
            &conn,
            &attempt("s3", "other", "c.example", Outcome::DeniedRule),
        )
        .unwrap();
        let all = list_attempts(&conn, &EgressLogQuery::default()).unwrap();
        let hosts: Vec<&str> = all.iter().map(|e| e.attempt.host.as_str()).collect();
        assert_eq!(hosts, ["c.example", "b.example", "a.example"]);
        assert_eq!(all[2].attempt.outcome, Outcome::Allowed);
        assert_eq!(
            (all[2].attempt.bytes_up, all[2].attempt.bytes_down),
            (10, 20)
        );
        let main = EgressLogQuery {
            group: Some("main".into()),
            limit: Some(1),
            ..EgressLogQuery::default()
        };
        let listed = list_attempts(&conn, &main).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attempt.host, "b.example");
        let one_session = EgressLogQuery {
            session: Some("s1".into()),
            ..EgressLogQuery::default()
        };
        assert_eq!(
            list_attempts(&conn, &one_session).unwrap()[0].attempt.host,
            "a.example"
        );
        // The JSON the CLI prints carries the outcome as its stored text.
        let json = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(json["outcome"], "not_listed");
        assert_eq!(json["kind"], "connect");
    }

    #[test]
    fn old_rows_are_pruned() {
        let (_dir, conn) = super::super::tests::db();
        // Pretend MAX_ROWS rows came before: the next insert removes everything older.
        conn.execute(
            "INSERT INTO egress_log (id, session_id, agent_group_id, host, port, kind, outcome, at_ms) \
             VALUES (1, 's', 'g', 'old.example', 443, 'connect', 'allowed', 0), \
                    (?1, 's', 'g', 'recent.example', 443, 'connect', 'allowed', 0)",
            [MAX_ROWS],
        )
        .unwrap();
        record_attempt(&conn, &attempt("s", "g", "new.example", Outcome::Allowed)).unwrap();
        let hosts: Vec<String> = list_attempts(&conn, &EgressLogQuery::default())
            .unwrap()
            .into_iter()
            .map(|e| e.attempt.host)
            .collect();
        assert_eq!(hosts, ["new.example", "recent.example"]);
    }
}
