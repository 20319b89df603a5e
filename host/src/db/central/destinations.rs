//! Destinations (`agent_destinations`): each agent group's named targets. A row is both the
//! name the agent uses and the permission to send there, one row per direction: a chat
//! (optionally one thread of it) or another agent group.
//!
//! Key types: [`DestinationRow`] (what `crabpot destinations list` shows), [`Target`].
//! [`destinations_for`] resolves a group's rows into the [`Destination`]s projected into
//! every session's `inbound.db` and re-checked at delivery.

use super::{DbError, MessagingGroup, constraint};
use protocol::time::now_ms;
use protocol::{AgentGroupId, Destination, DestinationType};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Longest destination name.
const MAX_NAME: usize = 64;

/// What a destination points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    /// A chat, or one thread of it.
    Channel {
        messaging_group_id: String,
        thread_id: Option<String>,
    },
    /// Another agent group.
    Agent { agent_group_id: AgentGroupId },
}

/// One destination as stored, with the chat address resolved for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRow {
    pub agent_group_id: AgentGroupId,
    pub name: String,
    pub display_name: String,
    pub target: Target,
    /// `<channel_type>/<platform_id>` of a channel destination.
    pub chat_address: Option<String>,
}

/// An agent group's destinations, resolved to their routing, for projection into
/// `inbound.db` and for re-validation at delivery.
pub fn destinations_for(
    conn: &Connection,
    agent_group: &AgentGroupId,
) -> Result<Vec<Destination>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT d.name, d.display_name, d.type, m.channel_type, m.platform_id, d.thread_id, d.target_agent_group_id \
         FROM agent_destinations d LEFT JOIN messaging_groups m ON m.id = d.messaging_group_id \
         WHERE d.agent_group_id = ?1 ORDER BY d.name",
    )?;
    let rows = statement.query_map([agent_group], |row| {
        Ok(Destination {
            name: row.get(0)?,
            display_name: row.get(1)?,
            destination_type: row.get::<_, DestinationType>(2)?,
            channel_type: row.get(3)?,
            platform_id: row.get(4)?,
            thread_id: row.get(5)?,
            agent_group_id: row.get::<_, Option<String>>(6)?.map(AgentGroupId::new),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One destination of a group, resolved; `None` when the group has no such name.
pub fn destination(
    conn: &Connection,
    agent_group: &AgentGroupId,
    name: &str,
) -> Result<Option<Destination>, DbError> {
    Ok(destinations_for(conn, agent_group)?
        .into_iter()
        .find(|d| d.name == name))
}

/// Destinations as stored, optionally of one group.
pub fn list_destinations(
    conn: &Connection,
    agent_group: Option<&AgentGroupId>,
) -> Result<Vec<DestinationRow>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT d.agent_group_id, d.name, d.display_name, d.type, d.messaging_group_id, d.thread_id, \
         d.target_agent_group_id, m.channel_type, m.platform_id \
         FROM agent_destinations d LEFT JOIN messaging_groups m ON m.id = d.messaging_group_id \
         WHERE ?1 IS NULL OR d.agent_group_id = ?1 ORDER BY d.agent_group_id, d.name",
    )?;
    let rows = statement.query_map([agent_group], |row| {
        let kind: DestinationType = row.get(3)?;
        let chat: Option<String> = row.get(4)?;
        let target_group: Option<String> = row.get(6)?;
        let channel: Option<String> = row.get(7)?;
        let platform: Option<String> = row.get(8)?;
        let target = match kind {
            DestinationType::Channel => Target::Channel {
                messaging_group_id: chat.unwrap_or_default(),
                thread_id: row.get(5)?,
            },
            DestinationType::Agent => Target::Agent {
                agent_group_id: AgentGroupId::new(target_group.unwrap_or_default()),
            },
        };
        Ok(DestinationRow {
            agent_group_id: row.get(0)?,
            name: row.get(1)?,
            display_name: row.get(2)?,
            target,
            chat_address: channel.zip(platform).map(|(c, p)| format!("{c}/{p}")),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Checks a destination name: 1-64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), DbError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "destination name {name:?} must be 1-{MAX_NAME} of [A-Za-z0-9._-], not starting with '.' or '-'"
        )))
    }
}

/// Adds a destination to `agent_group`; a name already used in the group is a conflict.
pub fn add_destination(
    conn: &Connection,
    agent_group: &AgentGroupId,
    name: &str,
    display_name: Option<&str>,
    target: &Target,
) -> Result<DestinationRow, DbError> {
    check_name(name)?;
    super::groups::agent_group(conn, agent_group)?;
    let (kind, chat, thread, target_group, default_display) = match target {
        Target::Channel {
            messaging_group_id,
            thread_id,
        } => {
            let chat = super::chats::messaging_group(conn, messaging_group_id)?;
            (
                DestinationType::Channel,
                Some(chat.id),
                thread_id.clone(),
                None,
                chat.name,
            )
        }
        Target::Agent { agent_group_id } => {
            let group = super::groups::agent_group(conn, agent_group_id)?;
            if &group.id == agent_group {
                return Err(DbError::Invalid(format!(
                    "agent group {agent_group} cannot name itself as a destination"
                )));
            }
            (
                DestinationType::Agent,
                None,
                None,
                Some(group.id),
                group.name,
            )
        }
    };
    conn.execute(
        "INSERT INTO agent_destinations (agent_group_id, name, display_name, type, messaging_group_id, thread_id, \
         target_agent_group_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            agent_group,
            name,
            display_name.unwrap_or(&default_display),
            kind,
            chat,
            thread,
            target_group,
            now_ms()
        ],
    )
    .map_err(|e| {
        constraint(e, || {
            format!("agent group {agent_group} already has a destination named {name:?}")
        })
    })?;
    list_destinations(conn, Some(agent_group))?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| DbError::NotFound {
            what: "destination",
            id: name.to_owned(),
        })
}

/// Removes a destination: the agent can no longer send there.
pub fn remove_destination(
    conn: &Connection,
    agent_group: &AgentGroupId,
    name: &str,
) -> Result<(), DbError> {
    let removed = conn.execute(
        "DELETE FROM agent_destinations WHERE agent_group_id = ?1 AND name = ?2",
        params![agent_group, name],
    )?;
    if removed == 0 {
        return Err(DbError::NotFound {
            what: "destination",
            id: format!("{agent_group}/{name}"),
        });
    }
    Ok(())
}

/// Makes sure `agent_group` has a destination for the whole of `chat` and returns its name:
/// the existing one, else `name` (a clash is a conflict), else one derived from the chat's
/// name and made unique within the group.
pub fn ensure_chat_destination(
    conn: &Connection,
    agent_group: &AgentGroupId,
    chat: &MessagingGroup,
    name: Option<&str>,
) -> Result<String, DbError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT name FROM agent_destinations WHERE agent_group_id = ?1 AND type = 'channel' \
             AND messaging_group_id = ?2 AND thread_id IS NULL",
            params![agent_group, chat.id],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(existing) = existing {
        return Ok(existing);
    }
    let name = match name {
        Some(name) => name.to_owned(),
        None => unique_name(conn, agent_group, &slug(&chat.name))?,
    };
    let target = Target::Channel {
        messaging_group_id: chat.id.clone(),
        thread_id: None,
    };
    add_destination(conn, agent_group, &name, None, &target)?;
    Ok(name)
}

/// `base`, or `base-2`, `base-3`, ... whichever is free in the group.
fn unique_name(
    conn: &Connection,
    agent_group: &AgentGroupId,
    base: &str,
) -> Result<String, DbError> {
    let taken = |name: &str| -> Result<bool, DbError> {
        Ok(conn
            .query_row(
                "SELECT 1 FROM agent_destinations WHERE agent_group_id = ?1 AND name = ?2",
                params![agent_group, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    };
    if !taken(base)? {
        return Ok(base.to_owned());
    }
    for n in 2..10_000 {
        let candidate = format!("{base}-{n}");
        if !taken(&candidate)? {
            return Ok(candidate);
        }
    }
    Err(DbError::Conflict(format!(
        "no free destination name like {base:?} in agent group {agent_group}"
    )))
}

/// A destination name made from a chat's name: lower case, `-` for anything else.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(48).collect();
    if slug.is_empty() { "chat".into() } else { slug }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, ok) in [
            ("terminal", true),
            ("room-1", true),
            ("a.b_c", true),
            ("", false),
            ("-x", false),
            (".x", false),
            ("a b", false),
            ("é", false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
        assert_eq!(slug("Team Room #1"), "team-room-1");
        assert_eq!(slug("!!!"), "chat");
    }
}
