//! Webhooks (`webhooks`, migration 011): [`Webhook`], inbound or outbound ([`Direction`]).
//!
//! An inbound hook is served at `/hooks/webhooks/<name>`; what it receives starts turns of its
//! agent group in the chat `webhook/<name>`, which [`create_inbound`] creates and wires (the
//! hook is its own sender, `webhook:<name>`). An outbound hook is a URL that agents' messages
//! are POSTed to; [`create_outbound`] creates the chat `webhook/<name>` so that a group reaches
//! it through an ordinary channel destination. The secret is kept as it is (it must sign and
//! verify HMACs), which is why it never leaves this module except to the adapter and, once,
//! to the operator who created the hook; [`list`] answers without it.

use super::chats::{self, NewChat, UnknownSenderPolicy};
use super::destinations;
use super::wirings::{self, WiringSettings};
use super::{DbError, constraint, text_enum};
use crate::config::ApiKey;
use protocol::AgentGroupId;
use protocol::time::now_ms;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// The channel type of every webhook chat (`webhook/<name>`).
pub const CHANNEL_TYPE: &str = crate::edge::WEBHOOK_CHANNEL_TYPE;

/// Longest hook name.
const MAX_NAME: usize = 64;
/// Longest outbound URL.
const MAX_URL: usize = 2048;

text_enum!(
    /// Which way a hook goes.
    Direction {
        /// Another system posts to crabpot.
        Inbound => "inbound",
        /// Crabpot posts agents' messages to a URL.
        Outbound => "outbound",
    }
);

/// A hook as `crabpot webhooks list` shows it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub name: String,
    pub direction: Direction,
    /// Inbound: the agent group its requests start turns of.
    pub agent_group_id: Option<AgentGroupId>,
    /// Outbound: where messages are POSTed.
    pub url: Option<String>,
    /// `webhook/<name>`.
    pub chat_address: String,
    /// Unix ms.
    pub created_at: i64,
}

/// A hook with its secret, for the adapter that signs or verifies with it.
#[derive(Clone, Debug)]
pub struct HookSecret {
    pub hook: Webhook,
    pub secret: ApiKey,
}

/// Checks a hook name: 1-64 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), DbError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "webhook name {name:?} must be 1-{MAX_NAME} of [A-Za-z0-9._-] (and not . or ..)"
        )))
    }
}

/// Checks an outbound URL: absolute `http` or `https` with a host, no credentials in it, at
/// most 2048 bytes.
pub fn check_url(url: &str) -> Result<(), DbError> {
    let invalid = |why: &str| DbError::Invalid(format!("webhook URL {url:?} {why}"));
    if url.len() > MAX_URL {
        return Err(invalid("is longer than 2048 bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "must not carry a user or password (the signature authenticates crabpot)",
        ));
    }
    Ok(())
}

fn webhook_from(row: &Row<'_>) -> rusqlite::Result<HookSecret> {
    let name: String = row.get(0)?;
    Ok(HookSecret {
        hook: Webhook {
            chat_address: format!("{CHANNEL_TYPE}/{name}"),
            name,
            direction: row.get(1)?,
            agent_group_id: row.get::<_, Option<String>>(2)?.map(AgentGroupId::new),
            url: row.get(3)?,
            created_at: row.get(5)?,
        },
        secret: ApiKey::new(row.get::<_, String>(4)?),
    })
}

const COLUMNS: &str = "name, direction, agent_group_id, url, secret, created_at";

/// The hook called `name`, with its secret; `None` when there is none.
pub fn find(conn: &Connection, name: &str) -> Result<Option<HookSecret>, DbError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE name = ?1"))?
        .query_row([name], webhook_from)
        .optional()?)
}

/// The hook called `name`, or a not-found error naming it.
pub fn get(conn: &Connection, name: &str) -> Result<HookSecret, DbError> {
    find(conn, name)?.ok_or_else(|| DbError::NotFound {
        what: "webhook",
        id: name.to_owned(),
    })
}

/// Every hook, by name, without secrets.
pub fn list(conn: &Connection) -> Result<Vec<Webhook>, DbError> {
    let mut statement =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks ORDER BY name"))?;
    let rows = statement.query_map([], webhook_from)?;
    Ok(rows
        .map(|row| row.map(|found| found.hook))
        .collect::<Result<_, _>>()?)
}

/// Whether `webhook/<name>` is the chat of an inbound hook (whose replies fan out to its
/// group's destinations).
pub fn is_inbound(conn: &Connection, name: &str) -> Result<bool, DbError> {
    Ok(find(conn, name)?.is_some_and(|found| found.hook.direction == Direction::Inbound))
}

fn insert(
    conn: &Connection,
    name: &str,
    direction: Direction,
    agent_group: Option<&AgentGroupId>,
    url: Option<&str>,
    secret: &ApiKey,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO webhooks (name, direction, agent_group_id, url, secret, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            name,
            direction,
            agent_group,
            url,
            secret.expose_secret(),
            now_ms()
        ],
    )
    .map_err(|e| constraint(e, || format!("a webhook named {name:?} already exists")))?;
    Ok(())
}

/// The chat `webhook/<name>`: a direct chat (every request engages) open to its one sender.
/// One left behind by an earlier hook of that name (its agent group was deleted, which takes
/// the hook's row but not its chat) is taken over.
fn create_chat(conn: &Connection, name: &str) -> Result<chats::MessagingGroup, DbError> {
    let address = format!("{CHANNEL_TYPE}/{name}");
    match chats::find_chat(conn, &address) {
        Ok(_) => chats::update_chat(
            conn,
            &address,
            &chats::ChatChanges {
                name: None,
                is_group: Some(false),
                unknown_sender_policy: Some(UnknownSenderPolicy::Public),
            },
        ),
        Err(DbError::NotFound { .. }) => chats::create_chat(
            conn,
            &NewChat {
                channel_type: CHANNEL_TYPE.to_owned(),
                platform_id: name.to_owned(),
                name: Some(format!("webhook {name}")),
                is_group: false,
                unknown_sender_policy: Some(UnknownSenderPolicy::Public),
            },
        ),
        Err(e) => Err(e),
    }
}

/// Creates an inbound hook of `agent_group`: the row, the chat `webhook/<name>` and its
/// wiring to the group. The wiring's destination for the hook's own chat is taken away
/// again: an inbound hook receives nothing, and its replies go to the group's other
/// destinations.
pub fn create_inbound(
    conn: &Connection,
    name: &str,
    agent_group: &AgentGroupId,
    secret: &ApiKey,
) -> Result<Webhook, DbError> {
    check_name(name)?;
    super::groups::agent_group(conn, agent_group)?;
    insert(
        conn,
        name,
        Direction::Inbound,
        Some(agent_group),
        None,
        secret,
    )?;
    let chat = create_chat(conn, name)?;
    let (_, destination) =
        wirings::create_wiring(conn, &chat, agent_group, &WiringSettings::default(), None)?;
    destinations::remove_destination(conn, agent_group, &destination)?;
    Ok(get(conn, name)?.hook)
}

/// Creates an outbound hook: the row and the chat `webhook/<name>` that destinations name.
pub fn create_outbound(
    conn: &Connection,
    name: &str,
    url: &str,
    secret: &ApiKey,
) -> Result<Webhook, DbError> {
    check_name(name)?;
    check_url(url)?;
    insert(conn, name, Direction::Outbound, None, Some(url), secret)?;
    create_chat(conn, name)?;
    Ok(get(conn, name)?.hook)
}

/// Removes a hook with its chat (and so the wiring and every destination naming it).
/// Returns the hook and the agent groups whose destinations or wirings changed.
pub fn remove(conn: &Connection, name: &str) -> Result<(Webhook, Vec<AgentGroupId>), DbError> {
    let hook = get(conn, name)?.hook;
    let mut groups: Vec<AgentGroupId> = destinations::list_destinations(conn, None)?
        .into_iter()
        .filter(|row| row.chat_address.as_deref() == Some(hook.chat_address.as_str()))
        .map(|row| row.agent_group_id)
        .collect();
    groups.extend(hook.agent_group_id.clone());
    groups.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    groups.dedup();
    conn.execute("DELETE FROM webhooks WHERE name = ?1", [name])?;
    match chats::delete_chat(conn, &hook.chat_address) {
        Ok(_) | Err(DbError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok((hook, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_are_checked() {
        for (name, ok) in [
            ("ci", true),
            ("Build.alerts-1_x", true),
            (".hidden", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name(&"a".repeat(65)).is_err());
        for (url, ok) in [
            ("https://example.com/hook", true),
            ("http://127.0.0.1:8080/x?y=1", true),
            ("ftp://example.com/", false),
            ("file:///etc/passwd", false),
            ("example.com/hook", false),
            ("https://user:pw@example.com/", false),
            ("", false),
        ] {
            assert_eq!(check_url(url).is_ok(), ok, "{url:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(check_url(&long).is_err());
    }

    #[test]
    fn hooks_are_created_listed_and_removed_with_their_chats() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Invalid(e.to_string()))?;
        let conn = super::super::open(&dir.path().join("crabpot.db"))?;
        let group = super::super::ensure_agent_group(&conn, "main", "Main")?.id;
        let secret = ApiKey::new("s3cret");
        let inbound = create_inbound(&conn, "ci", &group, &secret)?;
        assert_eq!(inbound.direction, Direction::Inbound);
        assert_eq!(inbound.chat_address, "webhook/ci");
        let chat = chats::find_chat(&conn, "webhook/ci")?;
        assert_eq!(wirings::wirings_for_chat(&conn, &chat.id)?.len(), 1);
        assert!(
            destinations::destinations_for(&conn, &group)?.is_empty(),
            "an inbound hook is no destination"
        );
        assert!(matches!(
            create_inbound(&conn, "ci", &group, &secret),
            Err(DbError::Conflict(_))
        ));
        let outbound = create_outbound(&conn, "alerts", "https://example.com/in", &secret)?;
        assert_eq!(outbound.url.as_deref(), Some("https://example.com/in"));
        assert!(is_inbound(&conn, "ci")? && !is_inbound(&conn, "alerts")?);
        assert_eq!(get(&conn, "ci")?.secret.expose_secret(), "s3cret");
        assert_eq!(list(&conn)?.len(), 2);
        let alerts = chats::find_chat(&conn, "webhook/alerts")?;
        destinations::add_destination(
            &conn,
            &group,
            "alerts",
            None,
            &destinations::Target::Channel {
                messaging_group_id: alerts.id,
                thread_id: None,
            },
        )?;
        let (_, groups) = remove(&conn, "alerts")?;
        assert_eq!(groups, vec![group.clone()]);
        assert!(destinations::destinations_for(&conn, &group)?.is_empty());
        assert!(chats::find_chat(&conn, "webhook/alerts").is_err());
        remove(&conn, "ci")?;
        assert!(list(&conn)?.is_empty());
        // Deleting a group takes its hooks; the chat left behind is taken over by a new hook.
        create_inbound(&conn, "ci", &group, &secret)?;
        super::super::groups::delete_agent_group(&conn, &group)?;
        assert!(list(&conn)?.is_empty());
        let group = super::super::ensure_agent_group(&conn, "main", "Main")?.id;
        create_inbound(&conn, "ci", &group, &secret)?;
        remove(&conn, "ci")?;
        assert!(matches!(remove(&conn, "ci"), Err(DbError::NotFound { .. })));
        Ok(())
    }
}
