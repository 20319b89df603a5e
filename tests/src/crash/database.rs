//! The session files' view of a crash run: for each session of the run's agent group, which
//! messages `inbound.db` holds, which replies the agent wrote to `outbound.db`, and which of
//! those `delivered` records as delivered (and how many send attempts each took).
//!
//! [`SessionView::read`] opens both files read-only while the host runs (both use the DELETE
//! journal, so a reader never blocks the writer for long). A message is lost in the database
//! when no delivered reply names it, and duplicated when two delivered replies name it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use super::tokens::tokens_in;

/// One session's files.
#[derive(Clone, Debug, Default)]
pub struct SessionView {
    /// The session's chat (`session_routing.platform_id`).
    pub chat: String,
    /// Tokens of the `chat` rows in `messages_in`.
    pub inbound_tokens: BTreeSet<String>,
    /// The agent's `chat` rows in `messages_out`.
    pub outbound_rows: usize,
    /// Outbound rows with a `delivered` row of status `delivered`.
    pub delivered_rows: usize,
    /// Delivered rows that took more than one send attempt (re-sent after a kill).
    pub resent_rows: usize,
    /// For each token, how many delivered rows name it.
    pub delivered_tokens: BTreeMap<String, usize>,
}

impl SessionView {
    /// Reads the session folder `dir` (`sessions/<group>/<session>/`).
    pub fn read(dir: &Path) -> anyhow::Result<SessionView> {
        let inbound = open(&dir.join("in").join("inbound.db"))?;
        let outbound = open(&dir.join("out").join("outbound.db"))?;
        let chat: String = inbound
            .query_row("SELECT platform_id FROM session_routing", [], |row| {
                row.get(0)
            })
            .optional()?
            .unwrap_or_default();
        let mut view = SessionView {
            chat,
            ..SessionView::default()
        };
        let mut statement =
            inbound.prepare("SELECT content FROM messages_in WHERE kind = 'chat'")?;
        for content in statement.query_map([], |row| row.get::<_, String>(0))? {
            view.inbound_tokens.extend(tokens_in(&text_of(&content?)));
        }
        let mut deliveries: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut statement =
            inbound.prepare("SELECT message_out_id, status, attempts FROM delivered")?;
        for row in statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })? {
            let (id, status, attempts) = row?;
            deliveries.insert(id, (status, attempts));
        }
        let mut statement =
            outbound.prepare("SELECT id, content FROM messages_out WHERE kind = 'chat'")?;
        for row in statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })? {
            let (id, content) = row?;
            view.outbound_rows += 1;
            let Some((status, attempts)) = deliveries.get(&id) else {
                continue;
            };
            if status != "delivered" {
                continue;
            }
            view.delivered_rows += 1;
            if *attempts > 1 {
                view.resent_rows += 1;
            }
            for token in tokens_in(&text_of(&content)) {
                *view.delivered_tokens.entry(token).or_insert(0) += 1;
            }
        }
        Ok(view)
    }
}

/// Reads every session of `group` under the host's `sessions/`.
pub fn read_group(sessions_dir: &Path, group: &str) -> anyhow::Result<Vec<SessionView>> {
    let group_dir = sessions_dir.join(group);
    let mut views = Vec::new();
    let entries = std::fs::read_dir(&group_dir)
        .with_context(|| format!("listing {}", group_dir.display()))?;
    let mut dirs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        views.push(
            SessionView::read(&dir)
                .with_context(|| format!("reading the session {}", dir.display()))?,
        );
    }
    Ok(views)
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The `text` of a content JSON (the whole content when it is not such an object).
fn text_of(content: &str) -> String {
    match serde_json::from_str::<Value>(content) {
        Ok(value) => value
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default(),
        Err(_) => content.to_owned(),
    }
}
