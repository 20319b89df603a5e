//! The central DB `data/crabpot.db` (DESIGN §7): schema migrations and queries. Host-only,
//! WAL, owned by one [`super::DbThread`].
//!
//! One file per noun: [`groups`] (agent groups), [`chats`] (messaging groups), [`wirings`]
//! (chat x agent group, with the session, engage and sender settings), [`sessions`],
//! [`destinations`] (the name map and ACL of each agent group), [`people`] (users, roles,
//! members, DMs, approver choice), [`approvals`], [`drops`] (dropped messages and the
//! platform-message dedup), [`usage`], [`questions`] (questions agents asked in chats) and
//! [`tasks`] (which session holds which scheduled task, and when sessions come due). [`adapters`] holds the out-of-process channel adapters and their token hashes; [`channel_state`] what the platform adapters keep across restarts; [`live_drafts`] the drafts shown as platform messages. Every function takes a `&Connection`, so a caller can
//! group several in one transaction; the common ones are re-exported here.

pub mod adapters;
pub mod approvals;
pub mod channel_state;
pub mod chats;
pub mod destinations;
pub mod drops;
pub mod egress_log;
pub mod groups;
pub mod live_drafts;
pub mod people;
pub mod questions;
pub mod sessions;
pub mod tasks;
pub mod uids;
pub mod usage;
pub mod web;
pub mod web_chats;
pub mod webhooks;
pub mod wirings;

use super::DbError;
use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{M, Migrations};
use std::path::Path;

pub use approvals::{Approval, ApprovalKind, ApprovalStatus};
pub use chats::{MessagingGroup, UnknownSenderPolicy, ensure_messaging_group, messaging_group};
pub use destinations::destinations_for;
pub use drops::{DropRecord, first_sighting, record_drop};
pub use groups::{AgentGroup, agent_group, ensure_agent_group};
pub use sessions::{Session, SessionMode, resolve_session, session};
pub use usage::{UsageRow, UsageTotals, record_usage, session_usage};
pub use wirings::{
    EngageMode, IgnoredMessagePolicy, NewWiring, SenderScope, Wiring, ensure_wiring,
    wirings_for_chat,
};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/central/001_init.sql"),
    include_str!("../../../migrations/central/002_people_approvals.sql"),
    include_str!("../../../migrations/central/003_tasks_questions_agents.sql"),
    include_str!("../../../migrations/central/004_session_failures.sql"),
    // 005 must stay after 004.
    include_str!("../../../migrations/central/005_session_uids.sql"),
    include_str!("../../../migrations/central/006_adapters.sql"),
    include_str!("../../../migrations/central/007_web.sql"),
    // 008 (web conversations) stays after 007 (web users and tokens).
    include_str!("../../../migrations/central/008_web_chats.sql"),
    include_str!("../../../migrations/central/009_channel_state.sql"),
    include_str!("../../../migrations/central/010_live_drafts.sql"),
    include_str!("../../../migrations/central/011_webhooks.sql"),
    include_str!("../../../migrations/central/012_egress_log.sql"),
    include_str!("../../../migrations/central/013_usage_estimated.sql"),
];

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

/// A fresh id with a prefix and 10 random hex digits: short enough to type.
pub(crate) fn short_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// An enum stored as TEXT (the values the schema CHECKs), with serde, parsing and SQL.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vdoc])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored TEXT value; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                Self::parse(text).ok_or_else(|| format!("{text:?} is not one of: {}", Self::choices()))
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("{text:?} is not a valid {}", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// Maps a failed INSERT/UPDATE on a UNIQUE or FOREIGN KEY constraint to a clear error.
pub(crate) fn constraint(error: rusqlite::Error, conflict: impl FnOnce() -> String) -> DbError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => DbError::Conflict(conflict()),
        _ => DbError::Sqlite(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::AgentGroupId;

    pub(crate) fn db() -> (tempfile::TempDir, Connection) {
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
        let other_group = DropRecord {
            agent_group_id: Some(AgentGroupId::new("g")),
            ..drop.clone()
        };
        record_drop(&conn, &other_group).unwrap();
        let counts: Vec<i64> = conn
            .prepare("SELECT count FROM dropped_messages ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(counts, [2, 1]);
        assert!(ensure_agent_group(&conn, "../x", "bad").is_err());
    }

    #[test]
    fn migration_3_keeps_approvals_and_their_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("crabpot.db")).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let migrations = Migrations::new(MIGRATIONS.iter().map(|s| M::up(s)).collect());
        migrations.to_version(&mut conn, 2).unwrap();
        conn.execute_batch(
            "INSERT INTO approvals (id, kind, requester, summary, created_at, expires_at) \
             VALUES ('ap-1', 'sender', 'cli:x', 's', 1, 2); \
             INSERT INTO approval_log (approval_id, at, actor, action, outcome) \
             VALUES ('ap-1', 1, 'operator', 'approve', 'accepted');",
        )
        .unwrap();
        migrations.to_latest(&mut conn).unwrap();
        let log: i64 = conn
            .query_row("SELECT count(*) FROM approval_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(log, 1);
        let kept = approvals::approval(&conn, "ap-1").unwrap();
        assert_eq!((kept.kind, kept.payload), (ApprovalKind::Sender, None));
        // The log still follows its approval, and the new kind is accepted.
        conn.execute("DELETE FROM approvals WHERE id = 'ap-1'", [])
            .unwrap();
        let log: i64 = conn
            .query_row("SELECT count(*) FROM approval_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(log, 0);
        conn.execute(
            "INSERT INTO approvals (id, kind, requester, summary, created_at, expires_at, payload) \
             VALUES ('ap-2', 'create_agent', 'agent:main', 's', 1, 2, '{}')",
            [],
        )
        .unwrap();
    }

    #[test]
    fn migrations_are_valid() {
        assert!(
            Migrations::new(MIGRATIONS.iter().map(|s| M::up(s)).collect())
                .validate()
                .is_ok()
        );
    }
}
